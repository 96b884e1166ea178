"""ZeroPadding1D/2D: zeros around the spatial axes. Attribute ``padding``: [left, right] or
[top, bottom, left, right]. The passes fold it into the convolutions that read it when they can."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, GraphError, Node
from microai.ops import tflite
from microai.ops.base import Operator, Shape, single, spatial
from microai.ops.conv import as_2d
from microai.ops.pow2 import POW2, PassThrough
from microai.ops.windows import zero_pad

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


class _PadWithZeroPoint(tflite.TFLiteSemantics):
    """TFLite's PAD of a quantized tensor: the padding holds the zero point (real 0); same format in, out."""

    def __init__(self, op: ZeroPadding) -> None:
        self.op = op

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        tflite.require_same_format(graph, node)
        zp = tflite.affine(node).zero_point[0]
        return self.op.pad(node, ins[0] - zp) + zp


class ZeroPadding(Operator):
    keeps_input_format = True

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.name = f"ZeroPadding{dims}D"
        self.integer = {POW2: PassThrough(self.pad), tflite.TFLITE: _PadWithZeroPoint(self)}

    def padding(self, node: Node) -> list[int]:
        return spatial(node, "padding", 2 * self.dims)

    def pad(self, node: Node, x: np.ndarray) -> np.ndarray:
        return zero_pad(x, self.padding(node))

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        x, pad = single(ins, node), self.padding(node)
        if len(x) != self.dims + 1:
            raise GraphError(f"{node.describe()}: input shape {x} is not {self.dims}D")
        return (x[0], *[x[1 + d] + pad[2 * d] + pad[2 * d + 1] for d in range(self.dims)])

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return self.pad(node, ins[0])

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_natural_layout(node)
        ctx.require_same_format(node)
        in_shape = ctx.input_shape(node)
        geometry = as_2d({"in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]), "kernel_size": [1],
                          "stride": [1], "pad": self.padding(node)})
        params = {"channels": in_shape[0], **geometry, "in_t": tflite.c_type(tflite.affine(node)),
                  "zp": tflite.affine(node).zero_point[0]}
        return ctx.layer(node, "tflite_pad.c.j2", params)

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_natural_layout(node)
        ctx.require_same_format(node)
        in_shape = ctx.input_shape(node)
        params = {"channels": in_shape[0], "in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]),
                  "pad": self.padding(node)}
        return ctx.layer(node, f"zeropadding{self.dims}d.c.j2", params)


OPERATORS = (ZeroPadding(1), ZeroPadding(2))
