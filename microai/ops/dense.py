"""Dense (fully connected): ``y = kernel @ x + bias`` on a vector.

Weights: ``kernel`` (out, in) as in PyTorch, ``bias`` (out,). Attribute: ``activation``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import GraphError, Node
from microai.ops import tflite
from microai.ops.base import Operator, Shape, single
from microai.ops.conv import arrange_pairs
from microai.ops.pow2 import POW2, Linear

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


def _products(node: Node, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return np.rint(x.astype(np.float64) @ kernel.astype(np.float64).T).astype(np.int64)


class Dense(Operator):
    name = "Dense"
    weights = ("kernel", "bias")
    relu_fusable = True
    folds_scale = True
    integer = {POW2: Linear("kernel", _products), tflite.TFLITE: tflite.Linear(_products)}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        x, k = single(ins, node), node.weights["kernel"]
        if len(x) != 1 or k.shape[1] != x[0]:
            raise GraphError(f"{node.describe()}: kernel {k.shape} does not accept input {x} "
                             f"(Flatten first?)")
        return (k.shape[0],)

    def macs(self, node: Node) -> int:
        return int(np.prod(node.shape)) * int(np.prod(node.weights["kernel"].shape[1:]))

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        y = ins[0].astype(np.float32) @ node.weights["kernel"].astype(np.float32).T
        return y + node.weights["bias"].astype(np.float32).reshape(1, -1)

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        kernel = ctx.weights(node, "kernel")[:, ctx.memory_order(ctx.layout[node.inputs[0]])]
        n_out, n_in = kernel.shape
        params = {"n_in": n_in, "n_out": n_out}
        if not tflite.optimizable(ctx, node):
            return tflite.lower_linear(ctx, node, "tflite_dense.c.j2", params, kernel)
        ctx.check_bound(node)  # output channels in pairs, the zero point in the bias (optimized/dense.c.j2)
        params |= {**tflite.io_params(ctx.graph, node), "steps": -(-n_in // 2), "narrow": True}
        bias = np.pad(tflite.folded_bias(ctx, node, kernel), (0, n_out % 2))
        arrays = ctx.arrays(node, params, kernel=arrange_pairs(kernel[:, None, :], params["steps"], True),
                            bias=bias)
        arrays += tflite.requantization_arrays(ctx, node, params)
        return ctx.layer(node, "tflite_dense.c.j2", params, arrays, scratch_bytes=2 * 2 * params["steps"])

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.check_bound(node)
        kernel = ctx.weights(node, "kernel")
        # the input may be a flattened channels-last tensor: permute the columns to its memory order
        kernel = kernel[:, ctx.memory_order(ctx.layout[node.inputs[0]])]
        acc_frac = ctx.input_fmt(node).frac + ctx.fmt(node, "kernel").frac if ctx.integer else 0
        bias = ctx.bias(node, acc_frac)
        n_out, n_in = kernel.shape
        params = {"n_in": n_in, "n_out": n_out, **ctx.finish(node, acc_frac)}
        scratch = 0
        if ctx.optimized:  # output channels in pairs (see optimized/dense.c.j2)
            bias = np.pad(bias, (0, n_out % 2))
            if ctx.integer:
                params["steps"] = steps = -(-n_in // 2)
                params["narrow"] = ctx.narrow
                kernel = arrange_pairs(kernel[:, None, :], steps, ctx.narrow)
                scratch = 2 * 2 * steps
            else:
                kernel = np.pad(kernel, ((0, n_out % 2), (0, 0)))
                kernel = np.moveaxis(kernel.reshape(-1, 2, n_in), 1, -1).reshape(len(kernel) // 2, -1)
        arrays = ctx.arrays(node, params, kernel=kernel, bias=bias)
        return ctx.layer(node, "dense.c.j2", params, arrays, scratch_bytes=scratch)


OPERATORS = (Dense(),)
