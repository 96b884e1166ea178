"""Softmax over a vector. pow2 graphs compute it in float32 from the dequantized input and round
the result half away from zero to a format of ``w - 1`` fractional bits; tflite graphs compute TFLite's
int8 softmax in gemmlowp fixed point (docs/arithmetic.md). Attribute ``beta`` (default 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import AffineFormat, Graph, GraphError, Node, QFormat
from microai.ops import fixedpoint, tflite
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


#: TFLite's int8 softmax: Q5.26 scaled differences, Q12.19 sum of exponentials.
SCALED_DIFF_BITS, ACCUMULATION_BITS = 5, 12


def softmax_parameters(graph: Graph, node: Node) -> tuple[int, int, int]:
    """(input multiplier, left shift, smallest difference to the row maximum still counted), as TFLM's
    ``PreprocessSoftmaxScaling`` and ``CalculateInputRadius`` compute them from beta and the input scale."""
    fin = tflite.input_affine(graph, node)
    beta = float(np.float32(node.attrs.get("beta", 1.0)))
    real = min(beta * float(np.float32(fin.scale[0])) * (1 << (31 - SCALED_DIFF_BITS)), (1 << 31) - 1.0)
    multiplier, shift = tflite.quantize_multiplier(real)
    if shift < 0:
        raise GraphError(f"{node.describe()}: softmax input scale {fin.scale[0]:.6g} too small (TFLite needs "
                         f"beta x scale x 2**26 > 1)")
    radius = ((1 << SCALED_DIFF_BITS) - 1) * (1 << (31 - SCALED_DIFF_BITS)) / (1 << shift)
    return multiplier, shift, -int(np.floor(radius))


def softmax_output_format(width: int = 8) -> AffineFormat:
    """The output format TFLite requires of an int8 softmax: scale 1/256, zero point -128."""
    if width != 8:
        raise GraphError("the tflite scheme's softmax is int8 only (TFLite's int16 softmax is not supported)")
    return AffineFormat.per_tensor(8, 1 / 256, -128)


class _TFLiteSoftmax(tflite.TFLiteSemantics):
    """TFLite's int8 softmax (reference_ops::Softmax): exp of the rescaled differences to the row maximum in
    fixed point, summed, one reciprocal, each exp times it, rounded to int8 (scale 1/256, zero point -128)."""

    @staticmethod
    def check(graph: Graph, node: Node) -> None:
        """TFLite's int8 softmax only: int8 input, int8 output of scale 1/256 and zero point -128."""
        fin = tflite.activation_format(tflite.input_affine(graph, node), node, "input")
        if fin.width != 8 or tflite.affine(node) != softmax_output_format():
            raise GraphError(f"{node.describe()}: the tflite scheme's softmax takes int8 and gives int8 with "
                             f"scale 1/256 and zero point -128, got {fin} -> {tflite.affine(node)} (TFLite's "
                             f"int16 softmax is not supported)")

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        self.check(graph, node)
        multiplier, shift, diff_min = softmax_parameters(graph, node)
        x = ins[0]
        diff = x - x.max(axis=1, keepdims=True)
        counted = diff >= diff_min
        scaled = fixedpoint.srdhm(diff * (1 << shift), multiplier)
        exps = fixedpoint.exp_on_negative_values(scaled, SCALED_DIFF_BITS)
        terms = np.where(counted, fixedpoint.rescale(exps, 0, ACCUMULATION_BITS), 0)
        total = fixedpoint.wrap(terms.sum(axis=1, keepdims=True))
        scale, bits_over_unit = fixedpoint.reciprocal(total, ACCUMULATION_BITS)
        exponent = bits_over_unit + 31 - 8
        out = fixedpoint.rounding_divide_by_pot(fixedpoint.srdhm(scale, exps), exponent) - 128
        return np.where(counted, np.clip(out, -128, 127), -128)


class Softmax(Operator):
    name = "Softmax"
    integer = {POW2: _FloatSoftmax(), tflite.TFLITE: _TFLiteSoftmax()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return single(ins, node)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        beta = node.attrs.get("beta", 1.0)
        return softmax(ins[0] if beta == 1.0 else ins[0] * np.float32(beta))

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        if len(node.shape) != 1:
            raise ctx.error(f"{node.describe()}: Softmax over a {len(node.shape)}-D tensor {node.shape} "
                            f"is not supported (Flatten first)")
        ctx.layout[node.name] = ctx.layout[node.inputs[0]]
        try:
            _TFLiteSoftmax.check(ctx.graph, node)
        except GraphError as e:
            raise ctx.error(str(e)) from e
        multiplier, shift, diff_min = softmax_parameters(ctx.graph, node)
        params = {"size": node.shape[0], "multiplier": multiplier, "shift": shift, "diff_min": diff_min}
        return ctx.layer(node, "tflite_softmax.c.j2", params)

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
