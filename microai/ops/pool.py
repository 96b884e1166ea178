"""MaxPool1D/2D and AvgPool1D/2D over windows without padding.

Attributes: ``pool_size`` (int or one per axis, required), ``stride`` (default: the pool size).
Both keep their input's number format; AvgPool divides its int32 window sum like C (docs/arithmetic.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, GraphError, Node
from microai.ops.base import IntegerSemantics, Operator, Shape, single, spatial
from microai.ops.pow2 import POW2, PassThrough, check_long, require_input_format
from microai.ops.windows import pool_windows
from microai.quant.formats import saturate

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


class Pool(Operator):
    keeps_input_format = True
    kind = ""  # "Max" or "Avg"

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.name = f"{self.kind}Pool{dims}D"

    def pool_size(self, node: Node) -> list[int]:
        return spatial(node, "pool_size", self.dims)

    def stride(self, node: Node) -> list[int]:
        return spatial(node, "stride", self.dims, self.pool_size(node))

    def windows(self, node: Node, x: np.ndarray) -> np.ndarray:
        """(N, C, *out, window) values of every window."""
        return pool_windows(x, self.pool_size(node), self.stride(node))

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        x = single(ins, node)
        if len(x) != self.dims + 1:
            raise GraphError(f"{node.describe()}: input shape {x} is not {self.dims}D")
        pool, stride = self.pool_size(node), self.stride(node)
        return (x[0], *[pool_out(x[1 + d], pool[d], stride[d], node.describe()) for d in range(self.dims)])

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_natural_layout(node)
        ctx.require_same_format(node)
        ctx.check_bound(node)
        pool = self.pool_size(node)
        in_shape = ctx.input_shape(node)
        params = {"channels": in_shape[0], "in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]),
                  "pool_size": pool, "stride": self.stride(node), "window": math.prod(pool),
                  "nearest": ctx.graph.rounding == "nearest", "integer": ctx.integer,
                  "relu": node.attrs.get("activation") == "relu"}
        return ctx.layer(node, f"{self.kind.lower()}pool{self.dims}d.c.j2", params)


def pool_out(length: int, pool: int, stride: int, where: str) -> int:
    if pool > length:
        raise GraphError(f"{where}: pool size {pool} larger than input length {length}")
    return (length - pool) // stride + 1


class MaxPool(Pool):
    kind = "Max"
    relu_fusable = True

    def __init__(self, dims: int) -> None:
        super().__init__(dims)
        self.integer = {POW2: PassThrough(self._max)}

    def _max(self, node: Node, x: np.ndarray) -> np.ndarray:
        return self.windows(node, x).max(axis=-1)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return self._max(node, ins[0])


class _IntegerMean(IntegerSemantics):
    """The int32 window sum divided by the window size like C (truncating, or rounded half away)."""

    def __init__(self, op: AvgPool) -> None:
        self.op = op

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        require_input_format(graph, node)
        win = self.op.windows(node, ins[0])
        total = check_long(node, win.sum(axis=-1), "window sum")
        count = win.shape[-1]
        if graph.rounding == "nearest":
            total = total + np.sign(total) * (count // 2)
        quotient = np.abs(total) // count * np.sign(total)  # C division truncates towards zero
        return saturate(quotient, graph.width)

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        window = math.prod(self.op.pool_size(node))
        full = 1 << (graph.width - 1)
        return window * full + (window // 2 if graph.rounding == "nearest" else 0)


class AvgPool(Pool):
    kind = "Avg"

    def __init__(self, dims: int) -> None:
        super().__init__(dims)
        self.integer = {POW2: _IntegerMean(self)}

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return self.windows(node, ins[0]).mean(axis=-1, dtype=np.float32)


OPERATORS = (MaxPool(1), MaxPool(2), AvgPool(1), AvgPool(2))
