"""ZeroPadding1D/2D: zeros around the spatial axes. Attribute ``padding``: [left, right] or
[top, bottom, left, right]. The passes fold it into the convolutions that read it when they can."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import GraphError, Node
from microai.ops.base import Operator, Shape, single, spatial
from microai.ops.pow2 import POW2, PassThrough
from microai.ops.windows import zero_pad

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


class ZeroPadding(Operator):
    keeps_input_format = True

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.name = f"ZeroPadding{dims}D"
        self.integer = {POW2: PassThrough(self._pad)}

    def padding(self, node: Node) -> list[int]:
        return spatial(node, "padding", 2 * self.dims)

    def _pad(self, node: Node, x: np.ndarray) -> np.ndarray:
        return zero_pad(x, self.padding(node))

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        x, pad = single(ins, node), self.padding(node)
        if len(x) != self.dims + 1:
            raise GraphError(f"{node.describe()}: input shape {x} is not {self.dims}D")
        return (x[0], *[x[1 + d] + pad[2 * d] + pad[2 * d + 1] for d in range(self.dims)])

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return self._pad(node, ins[0])

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_natural_layout(node)
        ctx.require_same_format(node)
        in_shape = ctx.input_shape(node)
        params = {"channels": in_shape[0], "in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]),
                  "pad": self.padding(node)}
        return ctx.layer(node, f"zeropadding{self.dims}d.c.j2", params)


OPERATORS = (ZeroPadding(1), ZeroPadding(2))
