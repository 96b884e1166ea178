"""Scale (per-channel multiply-add) and BatchNorm, which the passes turn into a Scale or fold away.

Scale weights: ``scale`` and ``bias`` (C,). BatchNorm weights: ``mean``, ``var``, ``gamma``, ``beta``
(C,), attribute ``eps`` (default 1e-5); it has no integer form: fold it before quantizing
(``microai.graph.passes.batchnorm_to_scale`` / ``fold_scale_into_conv``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, GraphError, Node, QFormat
from microai.ops.base import FracChooser, IntegerSemantics, Operator, Shape, per_channel, single
from microai.ops.pow2 import POW2, Linear

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


def _channel_shape(node: Node, ins: list[Shape], weight: str) -> Shape:
    x, w = single(ins, node), node.weights[weight]
    if w.shape != (x[0],):
        raise GraphError(f"{node.describe()}: {w.shape[0]} channels of parameters for input {x}")
    return x


def _products(node: Node, x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return x * per_channel(scale, x.ndim)


class Scale(Operator):
    name = "Scale"
    weights = ("scale", "bias")
    relu_fusable = True
    integer = {POW2: Linear("scale", _products)}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return _channel_shape(node, ins, "scale")

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        x = ins[0]
        s, b = node.weights["scale"].astype(np.float32), node.weights["bias"].astype(np.float32)
        return x * per_channel(s, x.ndim) + per_channel(b, x.ndim)

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.check_bound(node)
        scale = ctx.weights(node, "scale")
        acc_frac = ctx.input_fmt(node).frac + ctx.fmt(node, "scale").frac if ctx.integer else 0
        bias = ctx.bias(node, acc_frac)
        layout = ctx.layout[node.inputs[0]]
        if len(node.shape) == 1 and layout != node.shape:  # flattened: parameters follow the memory order
            order = ctx.memory_order(layout)
            scale, bias = scale[order], bias[order]
        ctx.layout[node.name] = layout
        params = {"channels": node.shape[0], "positions": math.prod(node.shape[1:]),
                  **ctx.finish(node, acc_frac)}
        arrays = ctx.arrays(node, params, scale=scale, bias=bias)
        return ctx.layer(node, "scale.c.j2", params, arrays)


class _FoldFirst(IntegerSemantics):
    """BatchNorm has no integer arithmetic: quantizers and the reference executor refuse it."""

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        raise GraphError(f"{node.describe()}: BatchNorm cannot run in integer arithmetic; "
                         f"convert it with microai.graph.passes.batchnorm_to_scale before quantizing")

    def formats(self, graph: Graph, node: Node, frac_of: FracChooser, width: int,
                coarsen: int = 0) -> dict[str, QFormat]:
        raise GraphError(f"{node.describe()}: BatchNorm left in the graph; fold it before quantizing")


class BatchNorm(Operator):
    name = "BatchNorm"
    weights = ("mean", "var", "gamma", "beta")
    integer = {POW2: _FoldFirst()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return _channel_shape(node, ins, "gamma")

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        x, w = ins[0], node.weights
        inv = (w["gamma"] / np.sqrt(w["var"] + np.float32(node.attrs.get("eps", 1e-5)))).astype(np.float32)
        shift = (w["beta"] - w["mean"] * inv).astype(np.float32)
        return x * per_channel(inv, x.ndim) + per_channel(shift, x.ndim)


OPERATORS = (Scale(), BatchNorm())
