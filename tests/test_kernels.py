"""Both kernel sets == the reference executor on random layer geometries, for every operator (host builds).

Each example draws one operator, a geometry (channel counts that leave SIMD tails, strides, padding wider
than the kernel, odd output counts...) and a precision, quantizes a small graph around it, generates C with
the reference and the optimized kernels and compares both with ``reference.run`` on ordinary inputs and on
inputs far outside the calibration range (every value saturated). The precisions cover both integer
schemes: the paper's power-of-two one (PTQ) and TFLite's (int8 and 16x8, :func:`quantize_tflite`); an
operator is drawn only with the schemes it has integer semantics for.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codegen_support import Builder, assert_c_matches, whole_row_bands

from codegen.lowering import KERNEL_SETS
from microai import ops
from microai.graph import Graph
from microai.graph.passes import simplify
from microai.quant.affine import quantize_tflite
from microai.quant.ptq import quantize_ptq

Draw = st.DrawFn


def _conv1d(draw: Draw) -> Graph:
    k, stride = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    pad = [draw(st.integers(0, k)), draw(st.integers(0, k))]
    length = draw(st.integers(max(1, k - sum(pad)), 24))
    b = Builder((draw(st.integers(1, 10)), length), seed=draw(st.integers(0, 99)))
    b.conv("x", draw(st.integers(1, 7)), k, stride, pad, relu=draw(st.booleans()))
    return b.graph()


def _conv2d(draw: Draw) -> Graph:
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = [draw(st.integers(0, k[0])), draw(st.integers(0, k[0])), draw(st.integers(0, k[1])),
           draw(st.integers(0, k[1]))]
    shape = (draw(st.integers(1, 5)), draw(st.integers(max(1, k[0] - pad[0] - pad[1]), 7)),
             draw(st.integers(max(1, k[1] - pad[2] - pad[3]), 9)))
    b = Builder(shape, seed=draw(st.integers(0, 99)))
    b.conv("x", draw(st.integers(1, 5)), k, draw(st.integers(1, 2)), pad, relu=draw(st.booleans()))
    return b.graph()


def _dense(draw: Draw) -> Graph:
    b = Builder((draw(st.integers(1, 24)),), seed=draw(st.integers(0, 99)))
    x = b.dense("x", draw(st.integers(1, 7)))
    if draw(st.booleans()):
        b.add("ReLU", [x])  # fused into the Dense by the passes
    return b.graph()


def _pool(op: str) -> Callable[[Draw], Graph]:
    def build(draw: Draw) -> Graph:
        dims = int(op[-2])
        size, stride = draw(st.integers(1, 4)), draw(st.integers(1, 3))
        spatial = [draw(st.integers(size, 9)) for _ in range(dims)]
        b = Builder((draw(st.integers(1, 9)), *spatial), seed=draw(st.integers(0, 99)))
        x = b.pool(op, "x", size, stride)
        if op.startswith("Max") and draw(st.booleans()):
            b.add("ReLU", [x])  # fused into the MaxPool
        return b.graph()
    return build


def _add(draw: Draw) -> Graph:
    c, length = draw(st.integers(1, 6)), draw(st.integers(2, 16))
    b = Builder((c, length), seed=draw(st.integers(0, 99)))
    operands = ["x", b.conv("x", c, 3, padding=[1, 1])]
    if draw(st.booleans()):
        operands.append(b.conv("x", c, 1))
    b.add("Add", operands, {"activation": "relu"} if draw(st.booleans()) else {})
    return b.graph()


def _relu(draw: Draw) -> Graph:
    b = Builder((draw(st.integers(1, 5)), draw(st.integers(1, 12))), seed=draw(st.integers(0, 99)))
    b.add("ReLU", ["x"])
    return b.graph()


def _scale(draw: Draw) -> Graph:
    b = Builder((draw(st.integers(1, 6)), draw(st.integers(1, 10))), seed=draw(st.integers(0, 99)))
    x = b.scale("x")
    if draw(st.booleans()):
        b.add("ReLU", [x])
    return b.graph()


def _batchnorm(draw: Draw) -> Graph:
    b = Builder((draw(st.integers(1, 6)), draw(st.integers(3, 10))), seed=draw(st.integers(0, 99)))
    x = b.conv("x", draw(st.integers(1, 5)), 3, padding=[1, 1]) if draw(st.booleans()) else "x"
    b.batchnorm(x)  # folded into the conv, or a Scale of its own
    return b.graph()


def _zero_padding(dims: int) -> Callable[[Draw], Graph]:
    def build(draw: Draw) -> Graph:
        spatial = [draw(st.integers(1, 7)) for _ in range(dims)]
        b = Builder((draw(st.integers(1, 5)), *spatial), seed=draw(st.integers(0, 99)))
        pad = [draw(st.integers(0, 3)) for _ in range(2 * dims)]
        x = b.add(f"ZeroPadding{dims}D", ["x"], {"padding": pad})
        if draw(st.booleans()):
            b.conv(x, draw(st.integers(1, 4)), 1)  # a consumer the padding cannot fold into (1x1, no padding)
        return b.graph()
    return build


def _flatten(draw: Draw) -> Graph:
    b = Builder((draw(st.integers(1, 4)), draw(st.integers(1, 6))), seed=draw(st.integers(0, 99)))
    b.dense(b.add("Flatten", [b.conv("x", draw(st.integers(1, 4)), 1)]), draw(st.integers(1, 5)))
    return b.graph()


def _depthwise(dims: int) -> Callable[[Draw], Graph]:
    def build(draw: Draw) -> Graph:
        k = [draw(st.integers(1, 4)) for _ in range(dims)]
        pad = [draw(st.integers(0, kk - 1)) for kk in k for _ in range(2)]
        spatial = [draw(st.integers(max(1, kk - 2 * p), 9)) for kk, p in zip(k, pad[::2], strict=True)]
        c, multiplier = draw(st.integers(1, 9)), draw(st.integers(1, 2))
        b = Builder((c, *spatial), seed=draw(st.integers(0, 99)))
        attrs = {"stride": [draw(st.integers(1, 3)) for _ in range(dims)], "padding": pad}
        if draw(st.booleans()):
            attrs["activation"] = draw(st.sampled_from(["relu", "relu6"]))
        b.add(f"DepthwiseConv{dims}D", ["x"], attrs,
              kernel=b.rng.standard_normal((c * multiplier, 1, *k)) / np.sqrt(np.prod(k)),
              bias=b.rng.standard_normal(c * multiplier) * 0.1)
        return b.graph()
    return build


def _mean(draw: Draw) -> Graph:
    spatial = [draw(st.integers(1, 9)) for _ in range(draw(st.integers(1, 2)))]
    b = Builder((draw(st.integers(1, 9)), *spatial), seed=draw(st.integers(0, 99)))
    x = b.add("Mean", ["x"])
    if draw(st.booleans()):
        b.dense(x, draw(st.integers(1, 5)))
    return b.graph()


def _softmax(draw: Draw) -> Graph:
    b = Builder((draw(st.integers(1, 12)),), seed=draw(st.integers(0, 99)))
    b.add("Softmax", [b.dense("x", draw(st.integers(2, 8)))])
    return b.graph()


def _identity(draw: Draw) -> Graph:
    b = Builder((draw(st.integers(1, 4)), draw(st.integers(2, 8))), seed=draw(st.integers(0, 99)))
    b.conv(b.add("Identity", ["x"]), draw(st.integers(1, 3)), 1)
    return b.graph()


#: A random graph around each operator of the registry (Input is in every graph).
GEOMETRIES: dict[str, Callable[[Draw], Graph]] = {
    "Conv1D": _conv1d, "Conv2D": _conv2d, "Dense": _dense, "MaxPool1D": _pool("MaxPool1D"),
    "MaxPool2D": _pool("MaxPool2D"), "AvgPool1D": _pool("AvgPool1D"), "AvgPool2D": _pool("AvgPool2D"),
    "Add": _add, "ReLU": _relu, "Scale": _scale, "BatchNorm": _batchnorm, "ZeroPadding1D": _zero_padding(1),
    "ZeroPadding2D": _zero_padding(2), "Flatten": _flatten, "Softmax": _softmax, "Identity": _identity,
    "DepthwiseConv1D": _depthwise(1), "DepthwiseConv2D": _depthwise(2), "Mean": _mean,
}
#: (width or None for float32, granularity); the roundings are drawn separately.
PRECISIONS = {"float32": (None, None), "int16": (16, "network"), "int12": (12, "layer"), "int9": (9, "layer"),
              "int8": (8, "layer"), "int5": (5, "layer")}
#: TFLite's scheme: the activation width of quantize_tflite (int8, or 16x8).
TFLITE_PRECISIONS = {"int8-tflite": 8, "int16x8": 16}


def _schemes(graph: Graph) -> set[str]:
    """The integer schemes every operator of ``graph`` (as quantization simplifies it) has semantics for."""
    return set.intersection(*[set(ops.REGISTRY[n.op].integer) for n in simplify(graph).nodes])


def test_every_operator_has_random_geometries() -> None:
    assert set(GEOMETRIES) == set(ops.REGISTRY) - {"Input"}


@st.composite
def quantized_layers(draw: Draw) -> tuple[Graph, np.ndarray]:
    graph = GEOMETRIES[draw(st.sampled_from(sorted(GEOMETRIES)))](draw)
    x = np.random.default_rng(draw(st.integers(0, 99))).standard_normal((16, *graph.input.shape)) * 1.5
    x = np.concatenate([x, 1e3 * np.sign(x[:1]), np.full_like(x[:1], -1e3)]).astype(np.float32)
    schemes = _schemes(graph)
    if any(n.op == "Softmax" for n in graph.nodes):  # TFLite's int16 softmax is a LUT of its own: not here
        choices = {"int8-tflite"} if "tflite" in schemes else set()
    else:
        choices = set(TFLITE_PRECISIONS) if "tflite" in schemes else set()
    choices |= set(PRECISIONS) if "pow2" in schemes else set()  # no float C without the paper's scheme either
    precision = draw(st.sampled_from(sorted(choices)))
    if precision in TFLITE_PRECISIONS:
        return quantize_tflite(graph, x[:16], activations=TFLITE_PRECISIONS[precision]), x
    width, granularity = PRECISIONS[precision]
    if width is not None:
        graph = quantize_ptq(graph, x[:16], width, granularity,
                             rounding=draw(st.sampled_from(["floor", "nearest"])),
                             quant_rounding=draw(st.sampled_from(["trunc", "nearest"])))
    return graph, x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quantized_layers(), st.booleans())
def test_both_kernel_sets_match_the_reference_executor(layer: tuple[Graph, np.ndarray],
                                                        whole_rows: bool) -> None:
    graph, x = layer
    with tempfile.TemporaryDirectory() as tmp:
        for kernels in KERNEL_SETS:
            with whole_row_bands(whole_rows):
                assert_c_matches(graph, x, Path(tmp) / kernels, kernels)
