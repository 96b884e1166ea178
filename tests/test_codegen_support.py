"""Helpers shared by the codegen tests: a small IR graph builder and the C-vs-reference check."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from codegen import check_against_reference, convert
from microai.graph import Graph, Node
from microai.graph.ir import infer_shapes
from microai.quant.ptq import quantize_ptq

#: (width or None for float32, granularity, shift rounding, float->fixed rounding)
PRECISIONS = {
    "float32": (None, "network", "floor", "trunc"),
    "int16": (16, "network", "floor", "trunc"),
    "int8": (8, "layer", "nearest", "nearest"),
    "int9": (9, "layer", "floor", "nearest"),
}


class Builder:
    """Appends float nodes with random weights; every method returns the new node's name."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes = [Node("x", "Input", attrs={"shape": list(shape)})]
        self._refresh()

    def shape(self, name: str) -> tuple[int, ...]:
        return next(n.shape for n in self.nodes if n.name == name)

    def add(self, op: str, inputs: list[str], attrs: dict[str, Any] | None = None,
            **weights: np.ndarray) -> str:
        name = f"n{len(self.nodes)}_{op.lower()}"
        arrays = {k: v.astype(np.float32) for k, v in weights.items()}
        self.nodes.append(Node(name, op, inputs, attrs or {}, arrays))
        self._refresh()
        return name

    def conv(self, x: str, c_out: int, k: int | tuple[int, int], stride: int = 1,
             padding: list[int] | None = None, relu: bool = False) -> str:
        shape = self.shape(x)
        dims = len(shape) - 1
        ks = (k,) * dims if isinstance(k, int) else tuple(k)
        fan_in = shape[0] * int(np.prod(ks))
        kernel = self.rng.standard_normal((c_out, shape[0], *ks)) / np.sqrt(fan_in)
        attrs = {"stride": stride, "padding": padding or [0] * 2 * dims}
        if relu:
            attrs["activation"] = "relu"
        return self.add(f"Conv{dims}D", [x], attrs, kernel=kernel, bias=self.rng.standard_normal(c_out) * 0.1)

    def dense(self, x: str, n_out: int) -> str:
        n_in = self.shape(x)[0]
        return self.add("Dense", [x], kernel=self.rng.standard_normal((n_out, n_in)) / np.sqrt(n_in),
                        bias=self.rng.standard_normal(n_out) * 0.1)

    def pool(self, op: str, x: str, size: int, stride: int | None = None) -> str:
        dims = int(op[-2])
        return self.add(op, [x], {"pool_size": [size] * dims, "stride": [stride or size] * dims})

    def scale(self, x: str) -> str:
        c = self.shape(x)[0]
        return self.add("Scale", [x], scale=self.rng.uniform(0.5, 1.5, c),
                        bias=self.rng.standard_normal(c) * 0.1)

    def batchnorm(self, x: str) -> str:
        c = self.shape(x)[0]
        return self.add("BatchNorm", [x], {"eps": 1e-5}, mean=self.rng.standard_normal(c) * 0.1,
                        var=self.rng.uniform(0.5, 2.0, c), gamma=self.rng.uniform(0.5, 1.5, c),
                        beta=self.rng.standard_normal(c) * 0.1)

    def graph(self, output: str | None = None) -> Graph:
        g = Graph([Node(n.name, n.op, list(n.inputs), dict(n.attrs), dict(n.weights)) for n in self.nodes],
                  output or self.nodes[-1].name)
        g.validate()
        return g

    def _refresh(self) -> None:
        infer_shapes(Graph(self.nodes, self.nodes[-1].name))


def quantized(graph: Graph, x: np.ndarray, precision: str) -> Graph:
    """``graph`` in one of PRECISIONS (PTQ calibrated on ``x``)."""
    width, granularity, rounding, quant_rounding = PRECISIONS[precision]
    if width is None:
        return graph
    return quantize_ptq(graph, x, width, granularity, rounding=rounding, quant_rounding=quant_rounding)


def whole_row_bands(whole: bool) -> AbstractContextManager:
    """With ``whole``, int8 band convolutions hold a whole output row's band even where the arena has no room
    for it; otherwise, in one-layer graphs (no arena), they hold one block's (codegen.convert.block_bands)."""
    return mock.patch("codegen.convert.block_bands", return_value=set()) if whole else nullcontext()


def assert_c_matches(graph: Graph, x: np.ndarray, outdir: Path, kernels: str = "optimized") -> dict[str, Any]:
    """Generate C for ``graph``, run ``x`` through the host build, require every vector to match."""
    convert(graph, outdir, kernels=kernels)
    check = check_against_reference(graph, outdir, x)
    assert check["vectors"] == len(x)
    assert check["matches"] == 1.0, check
    return check


def test_builder_makes_valid_graphs() -> None:
    b = Builder((3, 10))
    y = b.conv("x", 4, 3, padding=[1, 1], relu=True)
    g = b.graph()
    assert g.node(y).shape == (4, 10)
    assert g.node(y).attrs["activation"] == "relu"
