"""ReLU on its own (the passes fuse it into a producer that is ``relu_fusable`` when they can)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, Node
from microai.ops import tflite
from microai.ops.base import Operator, Shape, single
from microai.ops.pow2 import POW2, PassThrough

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


def _relu(node: Node, x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


class _TFLiteReLU(tflite.TFLiteSemantics):
    """A ReLU keeping its input's format: values below the zero point (real 0) become the zero point."""

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        tflite.require_same_format(graph, node)
        return np.maximum(ins[0], tflite.affine(node).zero_point[0])


class ReLU(Operator):
    name = "ReLU"
    keeps_input_format = True
    integer = {POW2: PassThrough(_relu), tflite.TFLITE: _TFLiteReLU()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return single(ins, node)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return np.maximum(ins[0], np.float32(0))

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_same_format(node)
        ctx.layout[node.name] = ctx.layout[node.inputs[0]]
        params = {"size": math.prod(node.shape), "in_t": tflite.c_type(tflite.affine(node)),
                  "zp": tflite.affine(node).zero_point[0]}
        return ctx.layer(node, "tflite_relu.c.j2", params)

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_same_format(node)
        ctx.layout[node.name] = ctx.layout[node.inputs[0]]
        return ctx.layer(node, "relu.c.j2", {"size": math.prod(node.shape)})


OPERATORS = (ReLU(),)
