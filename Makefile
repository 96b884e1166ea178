# MicroAI: two entry points for a fresh machine.
#   make run   set up (Debian packages + .venv) then run the pipeline on params.yaml
#   make test  set up then run the whole test suite
# Set-up is idempotent: stamps make re-runs install nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# gcc: the host board and the training kernels (microai/train/native/kernels.c, built on first use).
# slurm-wlm + munge: the SLURM test starts a single-node cluster on localhost (tests/slurm_cluster.py).
APT_PACKAGES := gcc gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm slurm-wlm munge
CORES ?= all

.PHONY: setup run test lint repro workflow-files clean-results readme-table

setup: $(VENV)/.deps-stamp .apt-stamp

# Debian packages: host and cross compilers, newlib, the Cortex-M4F emulator, SLURM and munge.
.apt-stamp:
	@if ! command -v gcc >/dev/null || ! command -v arm-none-eabi-gcc >/dev/null || ! command -v qemu-system-arm >/dev/null \
	    || ! test -f /usr/lib/arm-none-eabi/newlib/libc.a || ! command -v slurmctld >/dev/null \
	    || ! command -v munged >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi
	@touch $@

$(VENV)/.deps-stamp: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

# The run's wall time, machine and commit, for `make readme-table` (kept out of results/ and dvc.lock).
RUN_RECORD := logs/make-run.json

run: setup
	@started=$$(date +%s.%N); commit=$$(git describe --always --dirty=+changes 2>/dev/null || echo unknown); \
	  $(BIN)/snakemake --cores $(CORES) results/tables.csv && \
	  $(BIN)/python workflow/scripts/readme_table.py record --started $$started --cores $(CORES) \
	    --commit "$$commit" --tflm-tree "$$MICROAI_TFLM_TREE" --out $(RUN_RECORD)

# Rewrite README.md's default-run table from results/tables.csv and the record of the run that wrote it.
readme-table: setup
	$(BIN)/python workflow/scripts/readme_table.py update --record $(RUN_RECORD) README.md

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# The same stages with DVC (dvc.yaml); stage commands call `python`, so the venv goes first on PATH.
repro: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

# The rules files (workflow/rules/<n>_<family>.smk) and dvc.yaml are generated from the stage table
# (microai/pipeline.py): one definition of the pipeline for Snakemake and DVC.
workflow-files: setup
	$(BIN)/python -m microai.snakemake_rules workflow/rules
	$(BIN)/python -m microai.dvc_yaml > dvc.yaml.tmp && mv dvc.yaml.tmp dvc.yaml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

# Everything the pipeline wrote; the results kept in git (metrics, plot data) come back as committed, so
# that the next `make run` records a clean commit.
clean-results:
	rm -rf results/* data build .snakemake
	git checkout -- results
