"""TFLite stages, the TFLite Micro tree lookup and the tflite-micro rows of the results table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from microai import stages
from microai.config import load_params
from microai.deploy.frameworks import unavailable_rows
from microai.graph.torch_import import from_torch
from microai.models import build_model
from microai.report.tables import read_results, results_table
from microai.tflite.tree import ENV_VAR, MARKER, NO_TREE, NoTFLMTree, find_tree

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ["qemu-m4", "nucleo-l452re-p"]
FRAMEWORKS = ["microai", "tflite-micro", "stm32cubeai"]


def fake_tree(path: Path) -> Path:
    (path / MARKER).parent.mkdir(parents=True)
    (path / MARKER).write_text("// TFLM\n")
    return path


# ----------------------------------------------------------------------------- tree lookup
def test_tree_from_params_wins_over_the_environment(tmp_path: Path) -> None:
    a, b = fake_tree(tmp_path / "a"), fake_tree(tmp_path / "b")
    params = {"frameworks": {"tflite-micro": {"source": "a"}}}
    assert find_tree(params, {ENV_VAR: str(b)}, cwd=tmp_path) == a.resolve()
    assert find_tree({"frameworks": {"tflite-micro": {"source": None}}}, {ENV_VAR: str(b)}) == b.resolve()


def test_no_tree_or_a_wrong_one_says_why(tmp_path: Path) -> None:
    with pytest.raises(NoTFLMTree) as missing:
        find_tree({}, {})
    assert str(missing.value) == NO_TREE
    with pytest.raises(NoTFLMTree, match=rf"'{tmp_path}' \(from {ENV_VAR}\) has no tensorflow/lite/micro"):
        find_tree({}, {ENV_VAR: str(tmp_path)})


def test_shared_tree_is_a_tflm_tree() -> None:
    assert find_tree({}, {ENV_VAR: str(ROOT.parent / "shared" / "tflm")}).is_dir()


# ----------------------------------------------------------------------------- stages
@pytest.fixture(scope="module")
def tflite_stages(tmp_path_factory):
    """A small prepared dataset, an untrained ResNetv1-6 (F=4) graph and both TFLite stages run."""
    tmp = tmp_path_factory.mktemp("tflite-stages")
    params = load_params(ROOT / "params.yaml")
    params["datasets"]["synthetic-har"].update(n_train=200, n_test=40)
    params["frameworks"]["tflite-micro"]["representative_samples"] = 50
    stages.download("synthetic-har", params, tmp / "raw")
    data = stages.prepare("synthetic-har", params, tmp / "raw", tmp / "synthetic-har.npz")
    torch.manual_seed(0)
    graph_path = tmp / "float32"
    from_torch(build_model("resnetv1-6", (9, 128), 6, 4).eval(), (9, 128)).save(graph_path)
    models = {p: tmp / f"{p}.tflite" for p in ("float32", "int8")}
    stages.convert_tflite(graph_path, data, params, models["float32"], models["int8"])
    evals = {p: stages.evaluate_tflm(m, graph_path, data, p, tmp / "runs" / f"{p}.eval.json")
             for p, m in models.items()}
    return params, data, graph_path, models, evals


def test_convert_stage_writes_both_models_deterministically(tflite_stages, tmp_path: Path) -> None:
    params, data, graph_path, models, _ = tflite_stages
    again = {p: tmp_path / f"{p}.tflite" for p in models}
    stages.convert_tflite(graph_path, data, params, again["float32"], again["int8"])
    for p, path in models.items():
        assert path.read_bytes() == again[p].read_bytes()
    assert sorted(f.name for f in tmp_path.iterdir()) == ["float32.tflite", "int8.tflite"]


def test_evaluate_stage_reports_accuracy_arena_and_operators(tflite_stages) -> None:
    *_, models, evals = tflite_stages
    for precision, result in evals.items():
        assert 0.0 <= result["accuracy"] <= 1.0 and result["test_vectors"] == 40
        assert result["arena_bytes"] == result["arena_head_bytes"] + result["arena_tail_bytes"] > 0
        assert result["model_bytes"] == models[precision].stat().st_size
        assert "CONV_2D" in result["operators"] and result["synthetic"] is True
        assert result["params"] == 13 * 16 + 39 * 4 + 6
        assert result["how_measured"].startswith("TFLM host runtime (PyPI tflite-micro")
    assert evals["int8"]["input"]["dtype"] == "int8" and evals["float32"]["input"]["scale"] is None
    assert evals["float32"]["agreement_with_float_reference"] == 1.0


# ----------------------------------------------------------------------------- results table
def _write(root: Path, rel: str, obj: dict) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def run_files(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """(MicroAI results, TFLM host-runtime results) of two runs, as the pipeline lays them out."""
    ours, tflm = [], []
    for run in (0, 1):
        d = f"results/runs/synthetic-har/resnetv1-6-f16/run{run}"
        for prec in ("float32", "int16", "int8"):
            ours.append(_write(tmp_path, f"{d}/{prec}.eval.json", {
                "accuracy": 0.9 - 0.01 * run, "params": 3958, "macs": 333920, "param_bytes": 3958,
                "synthetic": True, "how_measured": "reference executor"}))
        for prec in ("float32", "int8"):
            tflm.append(_write(tmp_path, f"{d}/tflite-micro/{prec}.eval.json", {
                "accuracy": 0.88 + 0.02 * run, "params": 3958, "macs": 333920, "arena_bytes": 9000 + run,
                "synthetic": True, "how_measured": "TFLM host runtime"}))
    d = "results/runs/synthetic-har/resnetv1-6-f16/run0"
    ours.append(_write(tmp_path, f"{d}/int8.qemu-m4.json", {
        "rom_bytes": 11000, "ram_bytes": 5000, "est_cycles": 800000, "outputs_match_reference": 1.0,
        "how_measured": "emulated"}))
    return ours, tflm


def _table(files: list[Path], params: dict, environ: dict) -> pd.DataFrame:
    return results_table(read_results(files), BOARDS, unavailable_rows(FRAMEWORKS, BOARDS, params, environ))


def test_missing_tree_gives_unavailable_board_rows_with_host_accuracy(run_files) -> None:
    ours, tflm = run_files
    table = _table(ours + tflm, {}, {})
    rows = table[table.framework == "tflite-micro"]
    assert sorted(rows.precision.unique()) == ["float32", "int8"] and len(rows) == 4
    assert (rows.note == f"synthetic data; unavailable: {NO_TREE}").all()
    assert rows.accuracy_mean.tolist() == pytest.approx([89.0] * 4) and (rows.runs == 2).all()
    assert rows.accuracy_std.tolist() == pytest.approx([2 ** 0.5] * 4)
    assert (rows.arena_bytes == 9000).all() and rows.rom_bytes.isna().all()
    assert rows.how_measured.str.startswith("accuracy: TFLM host runtime").all()


def test_missing_tree_leaves_the_rest_of_the_table_unchanged(run_files, tmp_path: Path) -> None:
    ours, tflm = run_files
    tree = fake_tree(tmp_path / "tflm")
    without = _table(ours + tflm, {}, {})
    with_tree = _table(ours + tflm, {}, {ENV_VAR: str(tree)})
    pd.testing.assert_frame_equal(without.drop(columns="note"), with_tree.drop(columns="note"))
    others = without.framework != "tflite-micro"
    pd.testing.assert_series_equal(without.note[others], with_tree.note[others])
    assert with_tree.note[~others].str.endswith("not measured on this board").all()
    # and the MicroAI and STM32Cube.AI rows are those of a table without any TFLM result
    no_tflm = _table(ours, {}, {})
    no_tflm = no_tflm[no_tflm.framework != "tflite-micro"].reset_index(drop=True)
    pd.testing.assert_frame_equal(without[others].reset_index(drop=True), no_tflm)


def test_stm32cubeai_stays_unavailable_for_every_precision(run_files) -> None:
    ours, tflm = run_files
    table = _table(ours + tflm, {}, {})
    cube = table[table.framework == "stm32cubeai"]
    assert len(cube) == 3 * len(BOARDS) and cube.note.str.contains("unavailable: STM32Cube.AI").all()
    assert cube.accuracy_mean.isna().all()


def test_tflm_board_results_fill_their_rows(run_files, tmp_path: Path) -> None:
    ours, tflm = run_files
    board = _write(tmp_path, "results/runs/synthetic-har/resnetv1-6-f16/run0/tflite-micro/int8.qemu-m4.json",
                   {"rom_bytes": 60000, "est_cycles": 900000, "outputs_match_reference": 1.0,
                    "how_measured": "emulated TFLM"})
    table = _table(ours + tflm + [board], {}, {ENV_VAR: str(fake_tree(tmp_path / "tflm"))})
    tflm_rows = table[table.framework == "tflite-micro"]
    row = tflm_rows[(tflm_rows.precision == "int8") & (tflm_rows.board == "qemu-m4")]
    assert row.rom_bytes.item() == 60000 and row.outputs_match_reference.item() == 1.0
    assert row.how_measured.item().endswith("emulated TFLM")
