"""Host build of the generated C: whole-batch runs, accuracy, failures, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_codegen_graphs import resnet_graph
from test_codegen_support import Builder, quantized

from codegen import CodegenError, check_against_reference, compile_host, convert, pack_input, run_host
from codegen.layout import memory_order
from microai.quant import reference


def test_resnet_10k_vectors_in_seconds_with_accuracy(tmp_path: Path) -> None:
    graph = resnet_graph(16)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10_000, 9, 128)).astype(np.float32)
    graph = quantized(graph, x[:500], "int16")
    convert(graph, tmp_path / "c")
    start = time.perf_counter()
    y = run_host(graph, tmp_path / "c", x)
    elapsed = time.perf_counter() - start
    assert y.shape == (10_000, 6) and y.dtype == np.int16
    assert elapsed < 30, f"10k vectors took {elapsed:.1f} s"
    labels = reference.predict(graph, x[:2000])
    labels[::3] = (labels[::3] + 1) % 6  # make a third of them wrong
    check = check_against_reference(graph, tmp_path / "c", x[:2000], labels)
    assert check["matches"] == 1.0 and check["max_abs_diff"] == 0.0
    assert check["c_accuracy"] == check["reference_accuracy"] == pytest.approx(1 - 667 / 2000)


def test_pack_input_is_channels_last_and_quantized() -> None:
    b = Builder((3, 5))
    b.conv("x", 2, 1)
    x = np.random.default_rng(0).standard_normal((4, 3, 5)).astype(np.float32)
    g = quantized(b.graph(), x, "int8")
    packed = pack_input(g, x)
    assert packed.shape == (4, 15) and packed.dtype == np.int8
    q = reference.quantize_input(g, x)
    assert np.array_equal(packed.reshape(4, 5, 3), q.transpose(0, 2, 1))
    assert np.array_equal(memory_order((3, 5)).reshape(5, 3)[:, 0], np.arange(5) * 1)


def test_mismatch_is_reported_not_hidden(tmp_path: Path) -> None:
    b = Builder((6,))
    b.dense("x", 3)
    x = np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32)
    g = quantized(b.graph(), x, "int16")
    convert(g, tmp_path / "c")
    model = tmp_path / "c" / "model.c"
    model.write_text(model.read_text().replace("output[o] = ", "output[o] = 1 + "))
    check = check_against_reference(g, tmp_path / "c", x)
    assert check["matches"] < 1.0 and check["max_abs_diff"] >= 1


def test_an_empty_set_is_refused_not_reported_as_matching(tmp_path: Path) -> None:
    b = Builder((6,))
    b.dense("x", 3)
    g = quantized(b.graph(), np.ones((4, 6), np.float32), "int16")
    convert(g, tmp_path / "c")
    with pytest.raises(CodegenError, match="no input vectors"):
        check_against_reference(g, tmp_path / "c", np.zeros((0, 6), np.float32), np.zeros(0, np.int64))


def test_host_build_failure_names_the_compiler_error(tmp_path: Path) -> None:
    b = Builder((4,))
    b.dense("x", 2)
    convert(b.graph(), tmp_path / "c")
    (tmp_path / "c" / "model.c").write_text("int broken(void) { return x; }\n")
    with pytest.raises(CodegenError, match="(?s)host build failed.*undeclared"):
        compile_host(tmp_path / "c", tmp_path / "build")


def test_cli_writes_library_and_reports(tmp_path: Path) -> None:
    b = Builder((3, 16))
    b.dense(b.add("Flatten", [b.pool("MaxPool1D", b.conv("x", 4, 3, relu=True), 2)]), 5)
    b.graph().save(tmp_path / "model")
    cli = [sys.executable, "-m", "codegen"]
    proc = subprocess.run([*cli, str(tmp_path / "model.json"), "-o", str(tmp_path / "c")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "c" / "codegen_report.json").read_text())
    assert report["precision"] == "float32" and report["input_size"] == 48 and report["output_size"] == 5
    assert report["activation_bytes_planned"] <= report["activation_bytes_pools"]
    assert [layer["op"] for layer in report["layers"]] == ["Conv1D", "MaxPool1D", "Dense"]
    proc = subprocess.run([*cli, str(tmp_path / "missing"), "-o", str(tmp_path / "d")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "missing.json" in proc.stderr
    assert not (tmp_path / "d").exists()
