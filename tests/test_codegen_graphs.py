"""Whole graphs: random ones (hypothesis) with residual branches in 1D and 2D, and the paper's ResNetv1-6."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codegen_support import PRECISIONS, Builder, assert_c_matches, quantized

from codegen import convert
from microai.graph import Graph
from microai.graph.torch_import import from_torch
from microai.models import build_model


@st.composite
def random_graphs(draw: st.DrawFn) -> Graph:
    dims = draw(st.sampled_from([1, 2]))
    size = draw(st.integers(6, 16)) if dims == 1 else draw(st.integers(4, 8))
    b = Builder((draw(st.integers(1, 4)), *[size] * dims), seed=draw(st.integers(0, 2**16)))
    x = "x"
    for _ in range(draw(st.integers(1, 5))):
        spatial = min(b.shape(x)[1:])
        kind = draw(st.sampled_from(["conv", "residual", "pool", "scale", "relu"]))
        if kind == "conv":
            k = draw(st.integers(1, min(3, spatial)))
            pad = [draw(st.integers(0, k - 1)) for _ in range(2 * dims)]
            x = b.conv(x, draw(st.integers(1, 5)), k, draw(st.integers(1, 2)), pad, relu=draw(st.booleans()))
        elif kind == "residual":  # conv -> conv on the main path, identity or 1x1 conv shortcut
            c = draw(st.integers(1, 4))
            body = b.conv(b.conv(x, c, 1, relu=True), c, min(3, spatial), padding=[(min(3, spatial) - 1) // 2,
                          min(3, spatial) // 2] * dims)
            shortcut = x if b.shape(x)[0] == c and draw(st.booleans()) else b.conv(x, c, 1)
            x = b.add("Add", [body, shortcut], {"activation": "relu"} if draw(st.booleans()) else {})
        elif kind == "pool" and spatial >= 2:
            x = b.pool(draw(st.sampled_from([f"MaxPool{dims}D", f"AvgPool{dims}D"])), x, 2)
        elif kind == "scale":
            x = b.scale(x)
        else:
            x = b.add("ReLU", [x])
    if draw(st.booleans()):
        b.dense(b.add("Flatten", [x]), draw(st.integers(2, 6)))
    return b.graph()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(), st.sampled_from(sorted(PRECISIONS)))
def test_random_graphs_match_reference(graph: Graph, precision: str) -> None:
    x = (np.random.default_rng(3).standard_normal((32, *graph.input.shape)) * 2).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        assert_c_matches(quantized(graph, x, precision), x, Path(tmp) / "c")


def resnet_graph(filters: int, input_shape: tuple[int, ...] = (9, 128), classes: int = 6) -> Graph:
    torch.manual_seed(filters)
    return from_torch(build_model("resnet", input_shape, classes, filters).eval(), input_shape)


@pytest.mark.parametrize(("filters", "precision"), [(8, "float32"), (16, "int16"), (16, "int8"),
                                                      (24, "int9"), (32, "int16")])
def test_resnet_v1_6_matches_reference(filters: int, precision: str, tmp_path: Path) -> None:
    graph = resnet_graph(filters)
    assert graph.param_count() == 13 * filters**2 + 39 * filters + 6  # the paper's ResNetv1-6
    x = np.random.default_rng(0).standard_normal((300, 9, 128)).astype(np.float32)
    assert_c_matches(quantized(graph, x, precision), x, tmp_path / "c")


@pytest.mark.parametrize("precision", ["float32", "int16", "int8"])
def test_resnet_2d_matches_reference(precision: str, tmp_path: Path) -> None:
    graph = resnet_graph(8, (3, 12, 12), 5)
    x = np.random.default_rng(0).standard_normal((64, 3, 12, 12)).astype(np.float32)
    assert_c_matches(quantized(graph, x, precision), x, tmp_path / "c")


def test_resnet_activation_memory(tmp_path: Path) -> None:
    graph = resnet_graph(16)
    x = np.random.default_rng(0).standard_normal((64, 9, 128)).astype(np.float32)
    result = convert(quantized(graph, x, "int16"), tmp_path / "c")
    planned = result.activation_bytes_planned
    assert result.activation_bytes_lower_bound <= planned <= result.activation_bytes_pools
    # the largest tensors are 16 x 128 int16 (4 KiB): at least two live at once, far below the sum of all
    assert result.activation_bytes_lower_bound >= 2 * 16 * 128 * 2
    for layer in result.layers:
        if layer["arena_offset"] is not None:
            end = layer["arena_offset"] + int(np.prod(layer["output_shape"])) * 2
            assert layer["arena_offset"] % 4 == 0 and end <= result.activation_bytes_planned
    header = (tmp_path / "c" / "model.h").read_text()
    assert f"MODEL_ACTIVATION_BYTES = {result.activation_bytes_planned}" in header


def test_node_names_that_are_not_c_identifiers(tmp_path) -> None:
    """torch.fx names the children of a top-level nn.Sequential '0', '1', ...: the C must compile."""
    b = Builder((2, 16))
    conv = b.conv("x", 3, 3, relu=True)
    flat = b.add("Flatten", [conv])
    b.dense(flat, 4)
    g = b.graph()
    renames = {n.name: name for n, name in zip(g.nodes, ["x", "0", "1.flat", "2-dense"], strict=True)}
    for n in g.nodes:
        n.name = renames[n.name]
        n.inputs = [renames[i] for i in n.inputs]
    g.output = renames[g.output]
    x = np.random.default_rng(1).standard_normal((3, 2, 16)).astype(np.float32)
    for precision in ("float32", "int8"):
        assert_c_matches(quantized(g, x, precision), x, tmp_path / precision)
