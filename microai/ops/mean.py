"""Mean: the average over every spatial position of each channel (global average pooling; TFLite's MEAN
over the spatial axes). Input (C, L) or (C, H, W), output (C,). Integer semantics: the tflite scheme."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, GraphError, Node
from microai.ops import tflite
from microai.ops.base import Operator, Shape, single
from microai.ops.pow2 import check_long

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


def mean_requantization(graph: Graph, node: Node) -> tuple[int, int, int]:
    """(count, multiplier, shift) of TFLM's integer MEAN: ``input scale / output scale`` as a multiplier, then
    the division by the count folded into it (``(m << s) / count`` with ``s = min(floor(log2 count), 32,
    31 + shift)``; the multiplier truncated like C's integer division)."""
    count = math.prod(graph.node(node.inputs[0]).shape[1:])
    fin, fout = tflite.input_affine(graph, node), tflite.affine(node)
    real = tflite.effective_scale(fin.scale[0], divisor=fout.scale[0])
    multiplier, shift = tflite.quantize_multiplier(real)
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    multiplier = (multiplier << fold) // count
    if multiplier > tflite.LONG_MAX:
        raise GraphError(f"{node.describe()}: MEAN multiplier leaves int32")
    return count, multiplier, shift - fold


class _TFLiteMean(tflite.TFLiteSemantics):
    """TFLite's int8/int16 MEAN: ``sum - zp_in x count`` (int32), one requantization that also divides by the
    count, plus the output zero point, clamped to the output type."""

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        fin = tflite.activation_format(tflite.input_affine(graph, node), node, "input")
        fout = tflite.activation_format(tflite.affine(node), node, "output")
        count, multiplier, shift = mean_requantization(graph, node)
        total = check_long(node, ins[0].reshape(len(ins[0]), ins[0].shape[1], -1).sum(axis=-1), "sum")
        shifted = check_long(node, total - fin.zero_point[0] * count, "sum - zero point x count")
        out = tflite.multiply_by_quantized_multiplier(node, shifted, multiplier, shift)
        return np.clip(out + fout.zero_point[0], fout.min_int, fout.max_int)

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        fin = tflite.input_affine(graph, node)
        count, _, shift = mean_requantization(graph, node)
        reach = max(fin.zero_point[0] - fin.min_int, fin.max_int - fin.zero_point[0])
        return max(count * max(-fin.min_int, fin.max_int), count * reach << max(shift, 0))


class Mean(Operator):
    name = "Mean"
    integer = {tflite.TFLITE: _TFLiteMean()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        x = single(ins, node)
        if len(x) < 2:
            raise GraphError(f"{node.describe()}: input {x} has no spatial axes to average")
        return (x[0],)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        x = ins[0]
        return x.reshape(len(x), x.shape[1], -1).mean(axis=-1, dtype=np.float32)

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        ctx.require_natural_layout(node)
        ctx.check_bound(node)
        count, multiplier, shift = mean_requantization(ctx.graph, node)
        fout = tflite.affine(node)
        params = {**tflite.io_params(ctx.graph, node), "channels": node.shape[0], "positions": count,
                  "multiplier": multiplier, "shift": shift, "out_min": fout.min_int, "out_max": fout.max_int}
        return ctx.layer(node, "tflite_mean.c.j2", params)


OPERATORS = (Mean(),)
