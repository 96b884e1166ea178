"""Which TFLite Micro board jobs the workflow plans (dry runs): none without a tree, one library for all
boards with one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_pipeline_e2e import ROOT, TFLM_TREE, tiny_params


def planned_jobs(workdir: Path, tree: str | None) -> dict[str, int]:
    """Job counts of ``snakemake -n`` for the e2e test's tiny configuration (qemu-m4 and nucleo)."""
    (workdir / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    env = {k: v for k, v in os.environ.items() if k != "MICROAI_TFLM_TREE"}
    if tree is not None:
        env["MICROAI_TFLM_TREE"] = tree
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "2", "-n", "results/tables.csv"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = (proc.stdout + proc.stderr).split("Job stats:", 1)[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


def test_without_a_tree_no_board_job_of_tflm_is_planned(tmp_path) -> None:
    jobs = planned_jobs(tmp_path, None)
    assert jobs["evaluate_tflm"] == 2  # the host runtime still gives the accuracy columns
    assert not {"tflm_library", "compile_tflm", "measure_tflm"} & jobs.keys()


@pytest.mark.skipif(not TFLM_TREE.is_dir(), reason=f"no TFLite Micro tree at {TFLM_TREE}")
def test_with_a_tree_one_library_serves_every_board_and_precision(tmp_path) -> None:
    jobs = planned_jobs(tmp_path, str(TFLM_TREE))
    assert jobs["tflm_library"] == 1
    assert jobs["compile_tflm"] == jobs["measure_tflm"] == 2 * 2  # float32, int8 x qemu-m4, nucleo
