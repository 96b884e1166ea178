"""MaxPool1D/2D and AvgPool1D/2D.

Attributes: ``pool_size`` (int or one per axis, required), ``stride`` (default: the pool size),
``padding`` ([left, right] / [top, bottom, left, right], default none; as TFLite's and Keras' 'same'
pooling: padded taps are ignored by MaxPool and not counted by AvgPool). Both keep their input's
number format; AvgPool divides its int32 window sum like C (docs/arithmetic.md). The paper's pow2
scheme has no padded pooling.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, GraphError, Node
from microai.ops import tflite
from microai.ops.base import IntegerSemantics, Operator, Shape, single, spatial
from microai.ops.conv import as_2d
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

    def padding(self, node: Node) -> list[int]:
        return spatial(node, "padding", 2 * self.dims, [0] * 2 * self.dims)

    def windows(self, node: Node, x: np.ndarray, fill: float = 0) -> np.ndarray:
        """(N, C, *out, window) values of every window, padded taps holding ``fill``."""
        pad = self.padding(node)
        if any(pad):
            widths = [(0, 0), (0, 0)] + [(pad[2 * d], pad[2 * d + 1]) for d in range(self.dims)]
            x = np.pad(x, widths, constant_values=fill)
        return pool_windows(x, self.pool_size(node), self.stride(node))

    def counts(self, node: Node, x: np.ndarray) -> np.ndarray:
        """(*out,) number of taps of each window inside the input (padding excluded)."""
        return self.windows(node, np.ones((1, 1, *x.shape[2:]), dtype=np.int64))[0, 0].sum(axis=-1)

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        x = single(ins, node)
        if len(x) != self.dims + 1:
            raise GraphError(f"{node.describe()}: input shape {x} is not {self.dims}D")
        pool, stride, pad = self.pool_size(node), self.stride(node), self.padding(node)
        if any(pad[i] >= pool[i // 2] for i in range(2 * self.dims)):
            raise GraphError(f"{node.describe()}: padding {pad} not smaller than the pool {pool}")
        return (x[0], *[pool_out(x[1 + d] + pad[2 * d] + pad[2 * d + 1], pool[d], stride[d], node.describe())
                        for d in range(self.dims)])

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_natural_layout(node)
        ctx.require_same_format(node)
        in_shape = ctx.input_shape(node)
        geometry = as_2d({"in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]),
                          "kernel_size": self.pool_size(node), "stride": self.stride(node),
                          "pad": self.padding(node)})
        params = {"channels": in_shape[0], **geometry, "pool_size": geometry["kernel_size"],
                  "kind": self.kind.lower(), **tflite.io_params(ctx.graph, node)}
        return ctx.layer(node, "tflite_pool.c.j2", params)

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        if any(self.padding(node)):
            raise ctx.error(f"{node.describe()}: padded pooling is only generated in the tflite scheme")
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
        self.integer = {POW2: PassThrough(self._unpadded_max), tflite.TFLITE: tflite.PassThrough(self._max)}

    def _max(self, node: Node, x: np.ndarray) -> np.ndarray:
        low = -np.inf if x.dtype.kind == "f" else -(1 << 62)  # padded taps never win
        return self.windows(node, x, low).max(axis=-1)

    def _unpadded_max(self, node: Node, x: np.ndarray) -> np.ndarray:
        require_unpadded(self, node)
        return self._max(node, x)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return self._max(node, ins[0])


class _IntegerMean(IntegerSemantics):
    """The int32 window sum divided by the window size like C (truncating, or rounded half away)."""

    def __init__(self, op: AvgPool) -> None:
        self.op = op

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        require_input_format(graph, node)
        require_unpadded(self.op, node)
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


class _TFLiteMean(tflite.TFLiteSemantics):
    """TFLite's int8/int16 AVERAGE_POOL_2D: the sum of the taps inside the input divided by their count,
    rounded half away from zero (C: ``(sum +- count / 2) / count``), clamped; same format in and out."""

    def __init__(self, op: AvgPool) -> None:
        self.op = op

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        tflite.require_same_format(graph, node)
        total = check_long(node, self.op.windows(node, ins[0]).sum(axis=-1), "window sum")
        count = self.op.counts(node, ins[0])
        half = np.where(total > 0, count // 2, -(count // 2))
        quotient = np.abs(total + half) // count * np.sign(total + half)  # C division truncates towards zero
        lo, hi = tflite.activation_range(node, tflite.affine(node))
        return np.clip(quotient, lo, hi)


class AvgPool(Pool):
    kind = "Avg"

    def __init__(self, dims: int) -> None:
        super().__init__(dims)
        self.integer = {POW2: _IntegerMean(self), tflite.TFLITE: _TFLiteMean(self)}

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        total = self.windows(node, ins[0]).sum(axis=-1, dtype=np.float32)
        return (total / self.counts(node, ins[0]).astype(np.float32)).astype(np.float32)


def require_unpadded(op: Pool, node: Node) -> None:
    if any(op.padding(node)):
        raise GraphError(f"{node.describe()}: padded pooling {op.padding(node)} has no integer form in the "
                         f"pow2 scheme")


OPERATORS = (MaxPool(1), MaxPool(2), AvgPool(1), AvgPool(2))
