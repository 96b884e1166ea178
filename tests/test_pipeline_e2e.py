"""The whole pipeline on a tiny configuration, in a scratch working directory (slow: minutes)."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from pipeline_support import ROOT, snakemake, tiny_params, write_params

from microai.pipeline import STAGES
from microai.report import FIGURES

pytestmark = pytest.mark.slow
#: TFLM's board rows are measured when a tree is named (.ci/run names the shared one).
TFLM_BOARD_ROWS = bool(os.environ.get("MICROAI_TFLM_TREE"))


def test_table_has_every_precision_board_and_framework(tiny_run):
    table = pd.read_csv(tiny_run / "results" / "tables.csv")
    ours = table[table.framework == "microai"]
    assert sorted(ours.precision.unique()) == ["float32", "int16", "int8"]
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


@pytest.mark.skipif(not TFLM_BOARD_ROWS, reason="MICROAI_TFLM_TREE names no TFLite Micro tree")
def test_tflm_rows_are_measured_on_the_boards(tiny_run):
    table = pd.read_csv(tiny_run / "results" / "tables.csv")
    tflm = table[table.framework == "tflite-micro"]
    assert set(tflm.board) == {"qemu-m4", "nucleo-l452re-p"} and (tflm.rom_bytes > 0).all()
    assert (tflm.est_cycles > 0).all() and (tflm.ram_bytes > 0).all()
    qemu = tflm[tflm.board == "qemu-m4"]
    assert sorted(qemu.precision) == ["float32", "int8"]
    assert (qemu.outputs_match_reference == 1.0).all() and (qemu.instructions > 0).all()
    assert qemu.how_measured.str.contains("bit for bit with the TFLM host runtime").all()
    nucleo = tflm[tflm.board == "nucleo-l452re-p"]
    assert nucleo.note.str.contains("not run on nucleo-l452re-p").all()
    run_dir = next((tiny_run / "results" / "runs").rglob("run0"))
    measured = json.loads((run_dir / "tflite-micro" / "int8.qemu-m4.json").read_text())
    profile = measured["layer_cycles"]  # per operator, in execution order
    assert any(k.endswith(" CONV_2D") for k in profile)
    assert abs(sum(profile.values()) - measured["est_cycles"]) <= len(profile)  # means, truncated
    assert 0 < measured["arena_used_bytes"] <= measured["arena_reserved_bytes"]


def test_metrics_and_plot_data_come_from_the_table(tiny_run):
    table = pd.read_csv(tiny_run / "results" / "tables.csv")
    metrics = json.loads((tiny_run / "results" / "metrics.json").read_text())
    cell = metrics["synthetic-har"]["resnetv1-6-f4"]["microai"]
    for row in table[table.framework == "microai"].itertuples():
        assert cell[row.precision]["accuracy_mean"] == pytest.approx(row.accuracy_mean, rel=1e-5)
        assert cell[row.precision][row.board]["rom_bytes"] == row.rom_bytes
    acc = pd.read_csv(tiny_run / "results" / "plots" / "accuracy_vs_filters.csv")
    assert sorted(acc.series) == ["float32", "int16", "int8", "tflite-micro float32", "tflite-micro int8"]
    at_max = pd.read_csv(tiny_run / "results" / "plots" / "deployment_at_max_filters.csv")
    # 3 precisions x 2 boards (and TFLM's 2 x 2 with a tree); unavailable rows have no numbers, left out
    assert len(at_max) == 6 + 4 * TFLM_BOARD_ROWS and (at_max.filters == 4).all()
    for png in (tiny_run / "results" / "figures").glob("*.png"):
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_second_call_has_nothing_to_do_quickly(tiny_run):
    start = time.monotonic()
    proc = snakemake(tiny_run, "--cores", "2")
    elapsed = time.monotonic() - start
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr
    print(f"no-op rerun: {elapsed:.1f} s")  # the benchmark figure; < 5 s on an idle 2-core machine


def test_changed_training_parameter_reruns_only_what_depends_on_it(tiny_run, tmp_path):
    params = tiny_params()
    params["train"]["synthetic-har"]["lr"] = 0.01
    changed = write_params(tmp_path / "changed.yaml", params)
    proc = snakemake(tiny_run, "-n", "--cores", "2", "--configfile", str(changed))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0
    assert "train_float" in out and "aggregate" in out
    assert "download" not in out and "prepare " not in out


@pytest.mark.parametrize("stage", ["train_float", "measure", "aggregate"])
def test_changing_a_stages_code_reruns_that_stage_and_not_earlier_ones(tiny_run, stage):
    """Every file of a stage's code (script, stage module, shared CLI plumbing, library) is an input.
    (Snakemake compares checksums of inputs newer than the outputs: the edit must change content.)"""
    entry = next(s for s in STAGES if s.name == stage)
    earlier = [s.name for s in STAGES[: STAGES.index(entry)]]
    edits = ((f"workflow/scripts/{entry.script}", True), (f"microai/stages/{entry.module}.py", False),
             ("microai/cli.py", False))
    for code, only_this in edits:
        path = ROOT / code
        text, before = path.read_text(), path.stat()
        try:
            path.write_text(text + "# edited\n")
            proc = snakemake(tiny_run, "-n", "--cores", "2")
        finally:
            path.write_text(text)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-2000:]
        assert f"rule {stage}:" in out, f"{code} changed, {stage} not rerun"
        if only_this:  # a stage's own script: nothing upstream reruns
            assert not any(f"rule {name}:" in out for name in earlier), f"{code} reran an earlier stage"


def test_an_older_sweeps_results_stay_out_of_the_table(tiny_run, tmp_path):
    """sweep.runs [0] after a sweep with runs [0, 1]: the run-1 files lying beside are not read."""
    stale = tiny_run / "results" / "runs" / "synthetic-har" / "resnetv1-6-f4" / "run1"
    stale.mkdir(parents=True, exist_ok=True)
    source = tiny_run / "results" / "runs" / "synthetic-har" / "resnetv1-6-f4" / "run0" / "int8.eval.json"
    (stale / "int8.eval.json").write_text(source.read_text())
    from microai import stages

    stages.aggregate(tiny_params(), tiny_run / "results" / "runs", tmp_path)
    table = pd.read_csv(tmp_path / "tables.csv")
    assert (table[table.framework == "microai"].runs == 1).all()


def test_report_embeds_every_table_and_figure_with_its_caption(tiny_run):
    report = tiny_run / "report.html"
    proc = snakemake(tiny_run, "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = report.read_text()
    for name in FIGURES:
        assert f"{name}.png" in html, f"figure {name} missing from the report"
    assert "tables.csv" in html and "paper_tables.csv" in html
    assert "Cortex-M4 timing model" in html  # the captions say how numbers were obtained
    assert html.count("data:image/png;base64") + html.count("image/png") >= len(FIGURES)


def test_ctrl_c_during_training_then_the_next_run_resumes(tmp_path):
    """SIGINT stops Snakemake and marks the running job's outputs incomplete; the project's default
    profile (rerun-incomplete) makes the next call redo that job instead of refusing to start.
    (Snakemake refuses only when an incomplete output exists: the checkpoint below stands for the
    part a training job killed mid-write leaves.)"""
    write_params(tmp_path / "params.yaml", tiny_params())
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(tmp_path / "params.yaml"), "--cores", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    training_log = tmp_path / "logs" / "train_float" / "synthetic-har" / "resnetv1-6-f4" / "run0.log"
    deadline = time.monotonic() + 300
    while not training_log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "snakemake ended before training started"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) != 0
    checkpoint = tmp_path / "results" / "models" / "synthetic-har" / "resnetv1-6-f4" / "run0" / "float32.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"half a checkpoint")
    without_profile = snakemake(tmp_path, "-n", "--cores", "1", "--workflow-profile", "none")
    assert "IncompleteFilesException" in without_profile.stdout + without_profile.stderr
    again = snakemake(tmp_path, "-n", "--cores", "1")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out[-3000:]
    assert "IncompleteFilesException" not in out and "rule train_float:" in out
