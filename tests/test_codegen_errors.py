"""Graphs the C generator must refuse: CodegenError naming the layer, and OUTDIR left untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_codegen_support import Builder, quantized

from codegen import CodegenError, convert
from microai.graph import Graph, QFormat


def _int16_dense(kernel_value: int, n_in: int = 8) -> Graph:
    b = Builder((n_in,))
    b.dense("x", 3)
    g = quantized(b.graph(), np.ones((4, n_in), np.float32), "int16")
    dense = g.nodes[-1]
    dense.weights["kernel"] = np.full_like(dense.weights["kernel"], kernel_value)
    return g


def test_overflowing_accumulator_names_the_layer_and_keeps_outdir(tmp_path: Path) -> None:
    outdir = tmp_path / "c"
    outdir.mkdir()
    (outdir / "previous.txt").write_text("kept")
    g = _int16_dense(30000)  # 8 inputs x 30000 x 2**15 > 2**31
    with pytest.raises(CodegenError, match=rf"'{g.nodes[-1].name}'.*exceeds the int32"):
        convert(g, outdir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp folders left behind
    assert sorted(p.name for p in outdir.iterdir()) == ["previous.txt"]


def test_safe_accumulator_is_accepted_and_replaces_outdir(tmp_path: Path) -> None:
    outdir = tmp_path / "c"
    outdir.mkdir()
    convert(_int16_dense(100), outdir)
    convert(_int16_dense(100), outdir)
    generated = ["codegen_report.json", "kernels.h", "model.c", "model.h", "number.h"]
    assert sorted(p.name for p in outdir.iterdir()) == generated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_batchnorm_in_an_integer_graph_is_refused(tmp_path: Path) -> None:
    b = Builder((3, 8))
    b.batchnorm("x")
    g = b.graph()
    g.precision = "int8"
    for n in g.nodes:
        n.formats = {"output": QFormat(8, 4), **{k: QFormat(8, 4) for k in n.weights}}
        n.weights = {k: np.zeros(v.shape, np.int32) for k, v in n.weights.items()}
    with pytest.raises(CodegenError, match="BatchNorm"):
        convert(g, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_unknown_operator_is_refused(tmp_path: Path) -> None:
    b = Builder((3, 8))
    b.add("ReLU", ["x"])
    g = b.graph()
    g.nodes[-1].op = "GELU"
    with pytest.raises(CodegenError, match="GELU"):
        convert(g, tmp_path / "c")


@pytest.mark.parametrize(("build", "message"), [
    (lambda b: b.add("Softmax", [b.conv("x", 2, 3)]), "Softmax over a 2-D"),
    (lambda b: b.add("Identity", ["x"]), "nothing to compute"),
    (lambda b: b.add("AvgPool1D", ["x"], {"pool_size": 2, "activation": "relu"}), "fused activation"),
    (lambda b: b.add("Conv1D", ["x"], {"activation": "tanh"}, kernel=np.ones((2, 3, 1)), bias=np.ones(2)),
     "Conv1D.*'tanh'"),
])
def test_shapes_and_attributes_the_templates_cannot_handle(build, message: str, tmp_path: Path) -> None:
    b = Builder((3, 8))
    build(b)
    with pytest.raises(CodegenError, match=message):
        convert(b.graph(), tmp_path / "c")


def test_pass_through_operator_must_keep_its_format(tmp_path: Path) -> None:
    b = Builder((3, 8))
    b.pool("MaxPool1D", "x", 2)
    g = quantized(b.graph(), np.ones((2, 3, 8), np.float32), "int8")
    g.nodes[-1].formats["output"] = QFormat(8, g.input.formats["output"].frac - 1)
    with pytest.raises(CodegenError, match="must keep the input format"):
        convert(g, tmp_path / "c")


def test_unsupported_layout_is_refused(tmp_path: Path) -> None:
    b = Builder((4,))
    b.dense("x", 2)
    with pytest.raises(CodegenError, match="layout"):
        convert(b.graph(), tmp_path / "c", layout="channels_first")
