"""Every operator in every precision: generated C == reference executor, bit for bit (float: 1e-5)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_codegen_support import PRECISIONS, Builder, assert_c_matches, quantized

from codegen import convert
from codegen.convert import prepare
from codegen.lowering import KERNEL_SETS
from microai.graph import Graph
from microai.quant.ptq import quantize_ptq


def conv1d() -> Graph:
    b = Builder((3, 20))
    b.conv("x", 4, 3, stride=2, padding=[1, 2])
    return b.graph()


def conv1d_relu_unpadded() -> Graph:
    b = Builder((3, 20))
    b.conv("x", 5, 4, relu=True)
    return b.graph()


def conv2d() -> Graph:
    b = Builder((2, 7, 9))
    b.conv("x", 3, (3, 2), stride=2, padding=[1, 1, 0, 1], relu=True)
    return b.graph()


def conv2d_unpadded() -> Graph:
    b = Builder((2, 6, 5))
    b.conv("x", 4, 3)
    return b.graph()


def dense() -> Graph:
    b = Builder((12,))
    b.dense("x", 5)
    return b.graph()


def flatten_dense_1d() -> Graph:  # channels-last memory: Dense columns permuted at generation time
    b = Builder((3, 8))
    b.dense(b.add("Flatten", [b.conv("x", 4, 3, relu=True)]), 6)
    return b.graph()


def flatten_dense_2d() -> Graph:
    b = Builder((2, 5, 4))
    b.dense(b.add("Flatten", [b.conv("x", 3, 2)]), 4)
    return b.graph()


def flatten_output() -> Graph:  # the output itself is a flattened channels-last tensor
    b = Builder((3, 6))
    b.add("Flatten", [b.conv("x", 2, 3)])
    return b.graph()


def maxpool1d() -> Graph:
    b = Builder((3, 21))
    b.pool("MaxPool1D", "x", 3, 2)
    return b.graph()


def maxpool2d() -> Graph:
    b = Builder((2, 7, 8))
    b.pool("MaxPool2D", b.conv("x", 3, 3, padding=[1, 1, 1, 1]), 2)
    return b.graph()


def avgpool1d() -> Graph:
    b = Builder((3, 20))
    b.pool("AvgPool1D", "x", 3, 2)
    return b.graph()


def avgpool2d() -> Graph:
    b = Builder((2, 7, 8))
    b.pool("AvgPool2D", "x", 3, 2)
    return b.graph()


def add_nary_1d() -> Graph:
    b = Builder((3, 12))
    a = b.conv("x", 3, 3, padding=[1, 1])
    c = b.conv("x", 3, 1)
    b.add("ReLU", [b.add("Add", [a, c, "x"])])  # fused into the Add by the passes
    return b.graph()


def add_2d() -> Graph:
    b = Builder((2, 5, 6))
    b.add("Add", [b.conv("x", 2, 3, padding=[1, 1, 1, 1]), "x"])
    return b.graph()


def relu() -> Graph:  # standalone: nothing before it to fuse into
    b = Builder((3, 10))
    b.add("ReLU", ["x"])
    return b.graph()


def scale_1d() -> Graph:
    b = Builder((4, 10))
    b.scale("x")
    return b.graph()


def scale_2d_relu() -> Graph:
    b = Builder((3, 4, 5))
    b.add("ReLU", [b.scale("x")])
    return b.graph()


def scale_flattened() -> Graph:  # per-element parameters follow the channels-last memory order
    b = Builder((2, 4))
    b.scale(b.add("Flatten", [b.conv("x", 3, 2)]))
    return b.graph()


def batchnorm() -> Graph:  # folded into the conv (float) by the passes before quantization
    b = Builder((3, 12))
    b.batchnorm(b.conv("x", 4, 3, padding=[1, 1]))
    return b.graph()


def batchnorm_standalone() -> Graph:  # becomes a Scale
    b = Builder((3, 12))
    b.batchnorm("x")
    return b.graph()


def zeropadding_folded() -> Graph:
    b = Builder((3, 12))
    b.conv(b.add("ZeroPadding1D", ["x"], {"padding": [2, 1]}), 4, 3)
    return b.graph()


def zeropadding1d() -> Graph:
    b = Builder((3, 12))
    b.pool("MaxPool1D", b.add("ZeroPadding1D", ["x"], {"padding": [1, 2]}), 2)
    return b.graph()


def zeropadding2d() -> Graph:
    b = Builder((2, 4, 5))
    b.pool("AvgPool2D", b.add("ZeroPadding2D", ["x"], {"padding": [1, 0, 2, 1]}), 2)
    return b.graph()


def softmax() -> Graph:
    b = Builder((10,))
    b.add("Softmax", [b.dense("x", 6)])
    return b.graph()


def identity() -> Graph:
    b = Builder((3, 8))
    b.add("Identity", [b.conv("x", 2, 3)])
    return b.graph()


OPERATOR_GRAPHS: dict[str, Callable[[], Graph]] = {f.__name__: f for f in (
    conv1d, conv1d_relu_unpadded, conv2d, conv2d_unpadded, dense, flatten_dense_1d, flatten_dense_2d,
    flatten_output, maxpool1d, maxpool2d, avgpool1d, avgpool2d, add_nary_1d, add_2d, relu, scale_1d,
    scale_2d_relu, scale_flattened, batchnorm, batchnorm_standalone, zeropadding_folded, zeropadding1d,
    zeropadding2d, softmax, identity,
)}


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", OPERATOR_GRAPHS)
def test_operator_matches_reference(case: str, precision: str, kernels: str, tmp_path: Path) -> None:
    float_graph = OPERATOR_GRAPHS[case]()
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((48, *float_graph.input.shape)) * 1.5).astype(np.float32)
    assert_c_matches(quantized(float_graph, x, precision), x, tmp_path / "c", kernels)


def test_every_layer_is_a_named_function(tmp_path: Path) -> None:
    g = add_nary_1d()
    result = convert(g, tmp_path / "c")
    simplified = prepare(g)
    code = (tmp_path / "c" / "model.c").read_text()
    assert [layer["op"] for layer in result.layers] == ["Conv1D", "Conv1D", "Add"]
    for layer in result.layers:
        index = [n.name for n in simplified.nodes].index(layer["node"])
        assert layer["function"] == f"layer_{index}_{layer['node']}"
        assert f"static MODEL_NOINLINE void {layer['function']}(" in code
    assert "#undef" not in code and "#define" not in code


def test_fused_relu_and_folded_padding_leave_no_layer(tmp_path: Path) -> None:
    result = convert(zeropadding_folded(), tmp_path / "c")
    assert [layer["op"] for layer in result.layers] == ["Conv1D"]
    result = convert(add_nary_1d(), tmp_path / "c")
    assert "ReLU" not in [layer["op"] for layer in result.layers]


@pytest.mark.parametrize("width", [2, 4, 12])
@pytest.mark.parametrize("case", ["add_nary_1d", "flatten_dense_2d", "avgpool2d", "softmax"])
def test_other_widths_match_reference(case: str, width: int, tmp_path: Path) -> None:
    float_graph = OPERATOR_GRAPHS[case]()
    x = (np.random.default_rng(2).standard_normal((48, *float_graph.input.shape)) * 1.5).astype(np.float32)
    graph = quantize_ptq(float_graph, x, width, "layer", rounding="nearest")
    assert_c_matches(graph, x, tmp_path / "c")
