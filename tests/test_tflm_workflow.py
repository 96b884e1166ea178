"""Which TFLite Micro board jobs the workflow plans (dry runs): none without a tree, one library for all
boards with one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pipeline_support import ROOT, snakemake, tiny_params, write_params

TFLM_TREE = ROOT.parent / "shared" / "tflm"  # as .ci/run names it


def planned_jobs(workdir: Path, tree: str | None) -> dict[str, int]:
    """Job counts of ``snakemake -n`` for the e2e test's tiny configuration (qemu-m4 and nucleo)."""
    write_params(workdir / "params.yaml", tiny_params())
    env = {k: v for k, v in os.environ.items() if k != "MICROAI_TFLM_TREE"}
    if tree is not None:
        env["MICROAI_TFLM_TREE"] = tree
    proc = snakemake(workdir, "--cores", "2", "-n", env=env, timeout=300)
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
