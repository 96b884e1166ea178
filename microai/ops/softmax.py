"""Softmax over a vector. Integer graphs compute it in float32 from the dequantized input and round
the result half away from zero to a format of ``w - 1`` fractional bits (docs/arithmetic.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, Node, QFormat
from microai.ops.base import FracChooser, IntegerSemantics, Operator, Shape, single
from microai.ops.pow2 import POW2, fmt, input_fmt
from microai.quant.formats import quantize_array

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class _FloatSoftmax(IntegerSemantics):
    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        real = ins[0].astype(np.float32) * np.float32(2.0 ** -input_fmt(graph, node).frac)
        return quantize_array(softmax(real), fmt(node, "output"), "nearest")

    def formats(self, graph: Graph, node: Node, frac_of: FracChooser, width: int,
                coarsen: int = 0) -> dict[str, QFormat]:
        return {"output": QFormat(width, width - 1)}


class Softmax(Operator):
    name = "Softmax"
    integer = {POW2: _FloatSoftmax()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return single(ins, node)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return softmax(ins[0])

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        if len(node.shape) != 1:
            raise ctx.error(f"{node.describe()}: Softmax over a {len(node.shape)}-D tensor {node.shape} "
                            f"is not supported (Flatten first)")
        ctx.layout[node.name] = ctx.layout[node.inputs[0]]
        params = {"size": node.shape[0], "integer": ctx.integer}
        if ctx.integer:
            params |= {"in_frac": ctx.input_fmt(node).frac, "out_frac": ctx.fmt(node).frac}
        return ctx.layer(node, "softmax.c.j2", params)


OPERATORS = (Softmax(),)
