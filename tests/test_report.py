"""Aggregation of per-run results into the long-format table and the paper's A3-A5 layout."""

import json
import math

import pytest

from microai.report.tables import COLUMNS, paper_layout, read_results, results_table


def _write(root, rel, obj):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def results(tmp_path):
    files = []
    for run, (acc_f, acc_q) in enumerate([(0.90, 0.89), (0.80, 0.81)]):
        d = f"results/runs/synthetic-har/resnetv1-6-f16/run{run}"
        for prec, acc in (("float32", acc_f), ("int16", acc_q)):
            files.append(_write(tmp_path, f"{d}/{prec}.eval.json", {
                "accuracy": acc, "params": 3958, "macs": 333920,
                "param_bytes": 3958 * (4 if prec == "float32" else 2), "synthetic": True,
                "how_measured": "reference executor"}))
    d = "results/runs/synthetic-har/resnetv1-6-f16/run0"
    files.append(_write(tmp_path, f"{d}/int16.check.json", {
        "matches": 1.0, "c_accuracy": 0.89, "how_measured": "host build",
        "activation_bytes_pools": 9000, "activation_bytes_planned": 8192}))
    files.append(_write(tmp_path, f"{d}/int16.qemu-m4.json", {
        "rom_bytes": 20000, "ram_bytes": 12000, "instructions": 1500000, "est_cycles": 2000000,
        "est_ms": 41.7, "est_energy_uwh": None, "outputs_match_reference": 1.0,
        "how_measured": "emulated (QEMU icount) + estimated cycles"}))
    files.append(_write(tmp_path, f"{d}/int16.nucleo-l452re-p.json", {
        "rom_bytes": 19000, "ram_bytes": 11000, "cycles": 1900000, "ms": 39.6, "energy_uwh": 0.17,
        "outputs_match_reference": 1.0, "how_measured": "cycles (DWT CYCCNT at 48 MHz, measured on board)"}))
    return files


def test_long_table_statistics_and_provenance(results):
    table = results_table(read_results(results), ["qemu-m4"],
                          {("stm32cubeai", "nucleo-l452re-p"): "CLI not installed"})
    assert list(table.columns) == COLUMNS
    int16 = table[(table.precision == "int16") & (table.framework == "microai")].iloc[0]
    assert int16.runs == 2
    assert int16.accuracy_mean == pytest.approx(85.0)
    assert int16.accuracy_std == pytest.approx(math.sqrt(((89 - 85) ** 2 + (81 - 85) ** 2) / 1))
    assert int16.c_matches_reference == 1.0 and int16.activation_bytes_planned == 8192
    assert int16.rom_bytes == 20000 and "synthetic data" in int16.note
    assert int16.how_measured.startswith("accuracy: reference executor; C check: ")
    assert int16.how_measured.endswith("emulated (QEMU icount) + estimated cycles")
    float32 = table[(table.precision == "float32") & (table.framework == "microai")].iloc[0]
    assert math.isnan(float32.rom_bytes) and "not measured" in float32.note
    cube = table[table.framework == "stm32cubeai"]
    assert len(cube) == 2 and cube.note.str.contains("unavailable: CLI not installed").all()
    assert cube.accuracy_mean.isna().all()


def test_paper_layout_pivots_filters(results):
    wide = paper_layout(results_table(read_results(results), ["qemu-m4"]))
    rom = wide[(wide.metric == "rom_kib") & (wide.precision == "int16")].iloc[0]
    assert rom["F16"] == pytest.approx(20000 / 1024)


def test_paper_layout_keeps_estimates_labelled_and_their_provenance(results):
    wide = paper_layout(results_table(read_results(results), ["qemu-m4", "nucleo-l452re-p"]))
    assert "how_measured" in wide.columns and wide.how_measured.str.len().gt(0).all()
    int16 = wide[wide.precision == "int16"].set_index(["board", "metric"])
    assert int16.loc[("qemu-m4", "est_ms"), "F16"] == pytest.approx(41.7)
    assert ("qemu-m4", "ms") not in int16.index, "an estimate must not appear as a measured time"
    assert int16.loc[("nucleo-l452re-p", "ms"), "F16"] == pytest.approx(39.6)
    assert int16.loc[("nucleo-l452re-p", "energy_uwh"), "F16"] == pytest.approx(0.17)
    assert "measured on board" in int16.loc[("nucleo-l452re-p", "ms"), "how_measured"]
    assert not {"time_ms"} & set(wide.metric)


def test_foreign_path_is_an_error(tmp_path):
    bad = _write(tmp_path, "results/other.json", {})
    with pytest.raises(ValueError, match="other.json"):
        read_results([bad])


def test_paper_layout_has_microai_over_tflm_ratios_per_precision(results, tmp_path):
    d = "results/runs/synthetic-har/resnetv1-6-f16/run0"
    board = {"rom_bytes": 10240, "ram_bytes": 3000, "est_cycles": 800000, "est_ms": 16.7}
    results += [_write(tmp_path, f"{d}/float32.qemu-m4.json", board),
                _write(tmp_path, f"{d}/tflite-micro/float32.eval.json",
                       {"accuracy": 0.9, "params": 3958, "macs": 333920, "arena_bytes": 9000}),
                _write(tmp_path, f"{d}/tflite-micro/float32.qemu-m4.json",
                       {"rom_bytes": 40960, "ram_bytes": 12000, "est_cycles": 3200000, "est_ms": 66.7})]
    wide = paper_layout(results_table(read_results(results), ["qemu-m4"]))
    ratios = wide[wide.framework == "microai / tflite-micro"].set_index("metric")
    assert set(ratios.precision) == {"float32"}  # int16 has no TFLM counterpart
    assert ratios.loc["est_cycles_ratio", "F16"] == pytest.approx(0.25)
    assert ratios.loc["rom_ratio", "F16"] == pytest.approx(0.25)
    assert ratios.loc["ram_ratio", "F16"] == pytest.approx(0.25)
