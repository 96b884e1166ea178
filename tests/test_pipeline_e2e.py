"""The whole pipeline on a tiny configuration, in a scratch working directory (slow: minutes)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from microai.config import load_params

ROOT = Path(__file__).resolve().parent.parent
TFLM_TREE = ROOT.parent / "shared" / "tflm"  # as .ci/run names it
pytestmark = pytest.mark.slow


def tiny_params() -> dict:
    p = copy.deepcopy(load_params(ROOT / "params.yaml"))
    p["sweep"].update(filters=[4], runs=[0], boards=["qemu-m4", "nucleo-l452re-p"],
                      precisions=["float32", "int16", "int8", "int8-tflite", "int8-tflite-qat", "int16x8"])
    p["datasets"]["synthetic-har"].update(n_train=240, n_test=60)
    p["train"]["synthetic-har"].update(epochs=2, milestones=[1])
    p["qat"]["synthetic-har"].update(epochs=1, milestones=[1])
    p["deploy"].update(vectors=3, timeout_s=60)
    return p


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    env = {**os.environ, "MICROAI_TFLM_TREE": str(TFLM_TREE)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=env)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    (workdir / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    proc = snakemake(workdir, "results/tables.csv")
    if proc.returncode != 0:
        logs = "\n".join(f"--- {f}\n{f.read_text()[-3000:]}"
                         for f in sorted((workdir / "logs").rglob("*.log")) if f.stat().st_size)
        pytest.fail(f"pipeline failed:\n{proc.stderr[-5000:]}\n{logs}")
    return workdir


def test_table_has_every_precision_board_and_framework(pipeline_run):
    table = pd.read_csv(pipeline_run / "results" / "tables.csv")
    ours = table[table.framework == "microai"]
    assert sorted(ours.precision.unique()) == ["float32", "int16", "int16x8", "int8", "int8-tflite",
                                               "int8-tflite-qat"]
    assert set(ours.board) == {"qemu-m4", "nucleo-l452re-p"}
    assert (ours.params == 13 * 16 + 39 * 4 + 6).all()
    assert ours.note.str.contains("synthetic data").all()
    assert (ours.c_matches_reference == 1.0).all()
    assert (ours.activation_bytes_planned <= ours.activation_bytes_pools).all()
    qemu = ours[ours.board == "qemu-m4"]
    assert (qemu.outputs_match_reference == 1.0).all()
    assert (qemu.instructions > 0).all() and (qemu.est_cycles > 0).all()
    assert (ours.rom_bytes > 0).all()
    tflm = table[table.framework == "tflite-micro"]  # TFLite's float32 and int8 PTQ, TFLM host runtime
    assert sorted(tflm.precision.unique()) == ["float32", "int8"] and (tflm.runs == 1).all()
    assert tflm.accuracy_mean.between(0, 100).all() and (tflm.arena_bytes > 0).all()
    assert tflm.how_measured.str.contains("TFLM host runtime").all()
    # MicroAI's C of the same int8.tflite, whole test set, against the TFLM host runtime
    assert (tflm[tflm.precision == "int8"].microai_c_matches_tflm == 1.0).all()
    cube = table[table.framework == "stm32cubeai"]
    assert cube.note.str.contains("unavailable: ").all() and cube.rom_bytes.isna().all()


@pytest.mark.skipif(not TFLM_TREE.is_dir(), reason=f"no TFLite Micro tree at {TFLM_TREE}")
def test_tflm_rows_are_measured_on_the_boards(pipeline_run):
    table = pd.read_csv(pipeline_run / "results" / "tables.csv")
    tflm = table[table.framework == "tflite-micro"]
    assert set(tflm.board) == {"qemu-m4", "nucleo-l452re-p"} and (tflm.rom_bytes > 0).all()
    assert (tflm.est_cycles > 0).all() and (tflm.ram_bytes > 0).all()
    qemu = tflm[tflm.board == "qemu-m4"]
    assert sorted(qemu.precision) == ["float32", "int8"]
    assert (qemu.outputs_match_reference == 1.0).all() and (qemu.instructions > 0).all()
    assert qemu.how_measured.str.contains("bit for bit with the TFLM host runtime").all()
    nucleo = tflm[tflm.board == "nucleo-l452re-p"]
    assert nucleo.note.str.contains("not run on nucleo-l452re-p").all()
    run_dir = next((pipeline_run / "results" / "runs").rglob("run0"))
    measured = json.loads((run_dir / "tflite-micro" / "int8.qemu-m4.json").read_text())
    profile = measured["layer_cycles"]  # per operator, in execution order
    assert any(k.endswith(" CONV_2D") for k in profile)
    assert abs(sum(profile.values()) - measured["est_cycles"]) <= len(profile)  # means, truncated
    assert 0 < measured["arena_used_bytes"] <= measured["arena_reserved_bytes"]


def test_second_call_has_nothing_to_do(pipeline_run):
    proc = snakemake(pipeline_run, "-n", "results/tables.csv")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changed_training_parameter_reruns_only_what_depends_on_it(pipeline_run):
    params = tiny_params()
    params["train"]["synthetic-har"]["lr"] = 0.01
    changed = pipeline_run / "changed.yaml"
    changed.write_text(yaml.safe_dump(params))
    proc = snakemake(pipeline_run, "-n", "results/tables.csv", "--configfile", str(changed))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0
    assert "train_float" in out and "aggregate" in out
    assert "download" not in out and "prepare " not in out
