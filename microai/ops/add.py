"""Add: element-wise sum of two or more tensors of equal shape (residual connections)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, GraphError, Node
from microai.ops import tflite
from microai.ops.base import IntegerSemantics, Operator, Shape
from microai.ops.pow2 import POW2, check_long, input_fmt, requant, requant_bound, requant_shift, shift_left

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


class _AlignedSum(IntegerSemantics):
    """Operands aligned to the finest input format, summed in int32, then requantized."""

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        fracs = [input_fmt(graph, node, i).frac for i in range(len(node.inputs))]
        n_acc = max(fracs)
        s = requant_shift(node, n_acc)
        acc = sum(shift_left(node, v, n_acc - f, f"operand '{i}'")
                  for v, f, i in zip(ins, fracs, node.inputs, strict=True))
        return requant(graph, node, acc, s)

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        full = 1 << (graph.width - 1)
        fracs = [input_fmt(graph, node, i).frac for i in range(len(node.inputs))]
        n_acc = max(fracs)
        acc = sum(full << (n_acc - f) for f in fracs)
        return requant_bound(graph, node, acc, acc, n_acc)


class TFLiteAdd(tflite.TFLiteSemantics):
    """TFLite's quantized ADD of two tensors: each operand ``(x - zp) << left_shift`` is rescaled to the
    scale ``2 x max(input scales)`` by a multiplier below one, the sum to the output scale, then the output
    zero point and the activation clamp. ``left_shift`` is 20, or 15 when a tensor is 16-bit (TFLite's int16
    ADD; a MicroAI graph mixing widths takes 15 too, so the shifted operands stay in int32)."""

    def parameters(self, graph: Graph, node: Node) -> dict[str, int]:
        """left shift, and (multiplier, shift) of both operands and of the sum, as TFLM's Prepare."""
        if len(node.inputs) != 2:
            raise GraphError(f"{node.describe()}: the tflite scheme adds two tensors, got {len(node.inputs)}")
        fa, fb = (tflite.activation_format(tflite.input_affine(graph, node, i), node, "input")
                  for i in (0, 1))
        fo = tflite.activation_format(tflite.affine(node), node, "output")
        left = 15 if 16 in (fa.width, fb.width, fo.width) else 20
        scale_a, scale_b, scale_out = (float(np.float32(f.scale[0])) for f in (fa, fb, fo))
        twice = 2 * max(scale_a, scale_b)
        params = {"left_shift": left}
        for key, real in (("a", scale_a / twice), ("b", scale_b / twice),
                          ("out", twice / ((1 << left) * scale_out))):
            multiplier, shift = tflite.quantize_multiplier(real)
            if real >= 1.0 or shift > 0:
                raise GraphError(f"{node.describe()}: ADD rescaling factor {real:.6g} of '{key}' is not "
                                 f"below one (output scale too small for its inputs)")
            params[f"{key}_multiplier"], params[f"{key}_shift"] = multiplier, shift
        return params

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        p = self.parameters(graph, node)
        total = 0
        for i, (x, key) in enumerate(zip(ins, ("a", "b"), strict=True)):
            zp = tflite.input_affine(graph, node, i).zero_point[0]
            shifted = check_long(node, (x - zp) << p["left_shift"], f"operand '{node.inputs[i]}' shifted")
            total = total + tflite.multiply_by_quantized_multiplier(node, shifted, p[f"{key}_multiplier"],
                                                                     p[f"{key}_shift"])
        total = check_long(node, total, "sum")
        out = tflite.multiply_by_quantized_multiplier(node, total, p["out_multiplier"], p["out_shift"])
        fo = tflite.affine(node)
        lo, hi = tflite.activation_range(node, fo)
        return np.clip(out + fo.zero_point[0], lo, hi)

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        """The largest shifted operand ``|x - zp| << left_shift`` (the rescaled ones sum to less)."""
        left = self.parameters(graph, node)["left_shift"]
        reach = []
        for i in range(len(node.inputs)):
            f = tflite.input_affine(graph, node, i)
            reach.append(max(f.zero_point[0] - f.min_int, f.max_int - f.zero_point[0]))
        return max(reach) << left


class Add(Operator):
    name = "Add"
    relu_fusable = True
    integer = {POW2: _AlignedSum(), tflite.TFLITE: TFLiteAdd()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        if len(ins) < 2 or any(s != ins[0] for s in ins):
            raise GraphError(f"{node.describe()}: operands must have equal shapes, got {ins}")
        return ins[0]

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        out = ins[0]
        for other in ins[1:]:
            out = out + other
        return out

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        self._same_layouts(ctx, node)
        ctx.check_bound(node)
        graph = ctx.graph
        fa, fb = (tflite.input_affine(graph, node, i) for i in (0, 1))
        params = {**TFLiteAdd().parameters(graph, node), **tflite.io_params(graph, node),
                  "size": math.prod(node.shape),
                  "a_t": tflite.c_type(fa), "b_t": tflite.c_type(fb), "zp_a": fa.zero_point[0],
                  "zp_b": fb.zero_point[0]}
        return ctx.layer(node, "tflite_add.c.j2", params)

    @staticmethod
    def _same_layouts(ctx: LoweringContext, node: Node) -> None:
        layouts = {ctx.layout[i] for i in node.inputs}
        if len(layouts) != 1:
            raise ctx.error(f"{node.describe()}: operands are laid out differently in memory "
                            f"({sorted(layouts)})")
        ctx.layout[node.name] = layouts.pop()

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        self._same_layouts(ctx, node)
        ctx.check_bound(node)
        if ctx.integer:
            fracs = [ctx.input_fmt(node, i).frac for i in range(len(node.inputs))]
            acc_frac = max(fracs)
            shifts = [acc_frac - f for f in fracs]
        else:
            acc_frac, shifts = 0, [0] * len(node.inputs)
        params = {"size": math.prod(node.shape), "shifts": shifts, **ctx.finish(node, acc_frac)}
        return ctx.layer(node, "add.c.j2", params)


OPERATORS = (Add(),)
