"""Both kernel sets on the emulated Cortex-M4F == reference executor: every operator, and a whole network.

The host build compiles the plain C paths only; here the libraries are cross-compiled for qemu-m4 (DSP
extension, inline assembly) and run on QEMU. One firmware holds a graph with every operator, so that the
CI cost stays a few firmwares: 1D and 2D graphs in int8, int16 and float32, each with both kernel sets, and
ResNetv1-6 with the reference kernels (test_codegen_simd runs the optimized ones on it). TFLite's scheme has
1D and 2D graphs of its own (its operators: depthwise convolutions, Mean; no Scale) in int8 and 16x8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_codegen_cross import every_operator_2d
from test_codegen_graphs import resnet_graph
from test_codegen_simd import probe_vectors
from test_codegen_support import Builder, quantized
from test_deploy_support import needs_qemu

import codegen
from codegen.convert import prepare
from codegen.lowering import KERNEL_SETS
from microai import ops
from microai.deploy.boards import get_board
from microai.graph import Graph
from microai.quant import reference
from microai.quant.affine import quantize_tflite
from microai.quant.compare import matching_vectors


def every_operator_1d() -> Graph:
    b = Builder((5, 21), seed=4)
    x = b.add("ZeroPadding1D", ["x"], {"padding": [2, 1]})
    x = b.conv(x, 7, 3, stride=2, padding=[1, 1], relu=True)  # 7 channels: an unpaired last one
    x = b.add("ReLU", [b.pool("MaxPool1D", x, 2)])
    y = b.conv(x, 7, 3, padding=[1, 1])
    x = b.batchnorm(b.add("Add", [x, y, b.conv(x, 7, 1)]))
    x = b.add("ReLU", [b.pool("AvgPool1D", b.scale(x), 2)])
    x = b.add("Identity", [b.add("ZeroPadding1D", [x], {"padding": [1, 0]})])
    b.add("Softmax", [b.dense(b.add("Flatten", [x]), 5)])
    return b.graph()


def depthwise(b: Builder, x: str, multiplier: int, k: int, stride: int, activation: str) -> str:
    c, dims = b.shape(x)[0], len(b.shape(x)) - 1
    return b.add(f"DepthwiseConv{dims}D", [x], {"stride": stride, "padding": [k // 2] * 2 * dims,
                                                 "activation": activation},
                 kernel=b.rng.standard_normal((c * multiplier, 1, *[k] * dims)) / k,
                 bias=b.rng.standard_normal(c * multiplier) * 0.1)


def every_tflite_operator_1d() -> Graph:
    b = Builder((5, 21), seed=5)
    x = b.add("ZeroPadding1D", ["x"], {"padding": [2, 1]})
    x = b.conv(x, 7, 3, stride=2, padding=[1, 1], relu=True)
    x = depthwise(b, b.add("ReLU", [b.pool("MaxPool1D", x, 2)]), 2, 3, 1, "relu6")
    x = b.add("Add", [x, b.conv(x, 14, 1), b.conv(x, 14, 3, padding=[1, 1])], {"activation": "relu"})
    x = b.add("Identity", [b.pool("AvgPool1D", x, 2)])
    b.add("Softmax", [b.dense(b.add("Flatten", [x]), 5)])
    return b.graph()


def every_tflite_operator_2d() -> Graph:
    b = Builder((3, 11, 9), seed=6)
    x = b.conv(b.add("ZeroPadding2D", ["x"], {"padding": [1, 0, 0, 1]}), 6, 3, stride=2, relu=True)
    x = depthwise(b, x, 1, 3, 1, "relu")
    x = b.add("Add", [x, b.conv(x, 6, 1)])
    x = b.pool("AvgPool2D", x, 2, 1)
    b.dense(b.add("Mean", [x]), 4)
    return b.graph()


TFLITE_GRAPHS = {"every_tflite_operator_1d": every_tflite_operator_1d,
                 "every_tflite_operator_2d": every_tflite_operator_2d}


def test_the_graphs_cover_every_operator() -> None:
    graphs = (every_operator_1d(), every_operator_2d(), *[make() for make in TFLITE_GRAPHS.values()])
    assert {n.op for g in graphs for n in g.nodes} == set(ops.REGISTRY)


def run_on_qemu(graph: Graph, kernels: str, tmp_path: Path) -> None:
    x = probe_vectors(graph.input.shape)
    result = codegen.convert(graph, tmp_path / "c", kernels=kernels)
    board = get_board("qemu-m4")
    run = board.run(board.build(tmp_path / "c", codegen.pack_input(graph, x), tmp_path / "build"), timeout=60)
    outputs = codegen.unpack_output(run.outputs, result.output_shape, result.output_layout_shape)
    expected = reference.run(prepare(graph), x)
    assert np.abs(expected).max() > 0
    assert matching_vectors(graph, outputs, expected).all(), (outputs, expected)


@needs_qemu
@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("precision", ["float32", "int16", "int8"])
@pytest.mark.parametrize("model", ["every_operator_1d", "every_operator_2d"])
def test_every_operator_on_qemu(model: str, precision: str, kernels: str, tmp_path: Path) -> None:
    float_graph = every_operator_1d() if model == "every_operator_1d" else every_operator_2d()
    calibration = np.random.default_rng(0).standard_normal((32, *float_graph.input.shape)).astype(np.float32)
    run_on_qemu(quantized(float_graph, calibration, precision), kernels, tmp_path)


@needs_qemu
@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("activations", [8, 16])
@pytest.mark.parametrize("model", sorted(TFLITE_GRAPHS))
def test_every_tflite_operator_on_qemu(model: str, activations: int, kernels: str, tmp_path: Path) -> None:
    float_graph = TFLITE_GRAPHS[model]()
    if activations == 16:  # TFLite's 16x8 has no int16 softmax here: the 1D graph's Softmax stays int8
        float_graph = Graph([n for n in float_graph.nodes if n.op != "Softmax"],
                            next(n.inputs[0] for n in float_graph.nodes if n.name == float_graph.output)
                            if float_graph.node(float_graph.output).op == "Softmax" else float_graph.output)
    calibration = np.random.default_rng(0).standard_normal((32, *float_graph.input.shape)).astype(np.float32)
    run_on_qemu(quantize_tflite(float_graph, calibration, activations=activations), kernels, tmp_path)


@needs_qemu
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_resnet_with_reference_kernels_on_qemu(precision: str, tmp_path: Path) -> None:
    float_graph = resnet_graph(8)
    calibration = np.random.default_rng(0).standard_normal((32, 9, 128)).astype(np.float32)
    run_on_qemu(quantized(float_graph, calibration, precision), "reference", tmp_path)
