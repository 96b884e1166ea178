"""TFLite's integer scheme (``tflite``): affine activations, per-channel weights, multiplier+shift rescaling.

Activations are int8 with a zero point (or int16 with zero point 0: TFLite's "16x8"); weights are
symmetric int8 with one scale per output channel; biases are int32 (int64 under int16 activations)
in the scale ``input scale x weight scale``. A multiply-accumulate layer computes
``acc = bias + sum w * (x - zp_in)`` and stores ``clamp(MultiplyByQuantizedMultiplier(acc, m, s) + zp_out)``
where ``(m, s)`` encodes ``input scale x weight scale / output scale`` as a Q31 multiplier and a
power of two.

This is the arithmetic of TFLite Micro's reference kernels as built by default (no
``TFLITE_SINGLE_ROUNDING``: ``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``,
``tensorflow/lite/kernels/internal/common.cc``), which CMSIS-NN's ``arm_nn_requantize`` reproduces
when ``CMSIS_NN_USE_SINGLE_ROUNDING`` is not defined; multipliers come from float32 scales in
double precision as TFLM's Prepare computes them (``QuantizeMultiplier``). docs/arithmetic.md has
the specification; every function here works on int64 numpy arrays holding the C values, and every
int32 intermediate is range-checked (an overflow raises instead of wrapping).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from microai.graph.ir import AffineFormat, Graph, GraphError, Node
from microai.ops.base import IntegerSemantics, per_channel
from microai.ops.pow2 import LONG_MAX, LONG_MIN, AccumulatorOverflow, check_long

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext

#: The scheme's name in ``Operator.integer``.
TFLITE = "tflite"
#: MultiplyByQuantizedMultiplier's 64-bit form requires |acc| < 2**47.
INT64_ACC_LIMIT = 1 << 47
#: Fused activations the scheme computes as output clamps (TFLite's NONE, RELU, RELU6).
ACTIVATIONS = ("relu", "relu6")


# ------------------------------------------------------------------ scalar helpers (Prepare time)
def round_half_away(v: float) -> int:
    """C's ``round``/TfLiteRound: halves away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def round_half_away_array(v: np.ndarray) -> np.ndarray:
    """:func:`round_half_away` of every value (float64 result)."""
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: ``real ~= m * 2**(shift - 31)`` with ``m`` in [2**30, 2**31).

    ``real`` is a double; a multiplier below 2**-31 becomes (0, 0) as in TFLite.
    """
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * (1 << 31))  # exact: q has 53 significant bits
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def effective_scale(*factors: float, divisor: float) -> float:
    """``f1 * f2 * ... / divisor`` in double from float32 scales, left to right as TFLM's Prepare does."""
    value = float(np.float32(factors[0]))
    for f in factors[1:]:
        value *= float(np.float32(f))
    return value / float(np.float32(divisor))


def quantize_scalar(value: float, fmt: AffineFormat) -> int:
    """TFLite's ``Quantize`` of an activation bound: ``zp + round(value / scale)`` (float32 division)."""
    return fmt.zero_point[0] + round_half_away(float(np.float32(value) / np.float32(fmt.scale[0])))


def activation_range(node: Node, out: AffineFormat) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized``: the output clamp of a fused activation."""
    lo, hi = out.min_int, out.max_int
    act = node.attrs.get("activation")
    if act in ACTIVATIONS:
        lo = max(lo, quantize_scalar(0.0, out))
    if act == "relu6":
        hi = min(hi, quantize_scalar(6.0, out))
    if act is not None and act not in ACTIVATIONS:
        raise GraphError(f"{node.describe()}: fused activation '{act}' not supported by the tflite scheme "
                         f"(choose one of {ACTIVATIONS})")
    return lo, hi


# ------------------------------------------------------------------ vectorised arithmetic (run time)
def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` of int32 values: ``round(a * b / 2**31)``, halves away
    from zero, truncating C division; saturates the single overflow case ``a == b == INT32_MIN``."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    ab = a * b
    t = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(t >= 0, t >> 31, -((-t) >> 31))
    return np.where((a == b) & (a == LONG_MIN), LONG_MAX, high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded to nearest, halves away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def multiply_by_quantized_multiplier(node: Node, x: np.ndarray, multiplier: np.ndarray,
                                     shift: np.ndarray, what: str = "accumulator") -> np.ndarray:
    """TFLite's 32-bit ``MultiplyByQuantizedMultiplier`` (double rounding): the left part of ``shift`` is a
    multiplication in int32 (checked), then ``RoundingDivideByPOT(SRDHM(x * 2**left, m), right)``."""
    shift = np.asarray(shift, dtype=np.int64)
    left, right = np.maximum(shift, 0), np.maximum(-shift, 0)
    scaled = check_long(node, np.asarray(x, dtype=np.int64) * (np.int64(1) << left), f"{what} << left shift")
    return rounding_divide_by_pot(srdhm(scaled, multiplier), right)


def multiply_by_quantized_multiplier_64(node: Node, x: np.ndarray, multiplier: np.ndarray,
                                        shift: np.ndarray) -> np.ndarray:
    """TFLite's 64-bit ``MultiplyByQuantizedMultiplier`` (int16 activations): the multiplier reduced to 16
    bits, ``(x * m16 + 2**(14 - shift)) >> (15 - shift)``; the result must fit in int32."""
    x = np.asarray(x, dtype=np.int64)
    if x.size and int(np.max(np.abs(x))) >= INT64_ACC_LIMIT:
        raise AccumulatorOverflow(f"{node.describe()}: 64-bit accumulator reaches {int(np.max(np.abs(x)))}, "
                                  f"beyond TFLite's limit of 2**47")
    multiplier = np.asarray(multiplier, dtype=np.int64)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - np.asarray(shift, dtype=np.int64)
    return check_long(node, (x * reduced + (np.int64(1) << (total - 1))) >> total, "requantized accumulator")


def quantize_real(x: np.ndarray, fmt: AffineFormat) -> np.ndarray:
    """TFLite's QUANTIZE of real values: ``clamp(round(x / scale) + zp)``, the division in float32, halves
    away from zero (what ``microai.tflite.runtime.quantize`` feeds the TFLM interpreter)."""
    v = (np.asarray(x, dtype=np.float32) / np.float32(fmt.scale[0])).astype(np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"cannot quantize non-finite values to {fmt}")
    rounded = round_half_away_array(v)
    return np.clip(rounded + fmt.zero_point[0], fmt.min_int, fmt.max_int).astype(np.int64)


def dequantize(q: np.ndarray, fmt: AffineFormat) -> np.ndarray:
    """``(q - zp) * scale`` as float64 (per-tensor formats)."""
    return (np.asarray(q, dtype=np.float64) - fmt.zero_point[0]) * fmt.scale[0]


# ------------------------------------------------------------------ formats of a node
def affine(node: Node, key: str = "output") -> AffineFormat:
    fmt = node.formats.get(key)
    if not isinstance(fmt, AffineFormat):
        raise GraphError(f"{node.describe()}: no affine '{key}' format recorded (not quantized in the "
                         f"tflite scheme?)")
    return fmt


def input_affine(graph: Graph, node: Node, i: int = 0) -> AffineFormat:
    return affine(graph.node(node.inputs[i]))


def activation_format(fmt: AffineFormat, node: Node, what: str) -> AffineFormat:
    """An activation format of the scheme: per tensor, int8 (any zero point) or int16 (zero point 0)."""
    if fmt.per_channel or fmt.width not in (8, 16) or (fmt.width == 16 and fmt.zero_point[0] != 0):
        raise GraphError(f"{node.describe()}: {what} format {fmt} is not an int8 or a symmetric int16 "
                         f"activation format")
    return fmt


def require_same_format(graph: Graph, node: Node) -> None:
    if affine(node) != input_affine(graph, node):
        raise GraphError(f"{node.describe()}: output format {affine(node)} differs from its input's "
                         f"{input_affine(graph, node)}; {node.op} keeps the input's scale and zero point")


def linear_requantization(graph: Graph, node: Node, weight: str) -> tuple[np.ndarray, np.ndarray]:
    """Per output channel (multiplier, shift) of ``input scale x weight scale / output scale``."""
    s_in, s_out = input_affine(graph, node).scale[0], affine(node).scale[0]
    scales = affine(node, weight).scales(len(node.weights[weight]))
    pairs = [quantize_multiplier(effective_scale(s_in, s_w, divisor=s_out)) for s_w in scales]
    return (np.array([m for m, _ in pairs], dtype=np.int64), np.array([s for _, s in pairs], dtype=np.int64))


# ------------------------------------------------------------------ C
C_TYPES = {8: "int8_t", 16: "int16_t", 32: "int32_t", 64: "int64_t"}


def c_type(fmt: AffineFormat) -> str:
    """The C type of a tensor of ``fmt``."""
    return C_TYPES[fmt.width]


def io_params(graph: Graph, node: Node) -> dict[str, Any]:
    """Types, zero points and activation clamp of a one-input layer (template parameters)."""
    fin, fout = input_affine(graph, node), affine(node)
    lo, hi = activation_range(node, fout)
    return {"in_t": c_type(fin), "out_t": c_type(fout), "zp_in": fin.zero_point[0],
            "zp_out": fout.zero_point[0], "act_min": lo, "act_max": hi}


def lower_linear(ctx: LoweringContext, node: Node, template: str, params: dict[str, Any],
                 kernel: np.ndarray, fallback: str = "the optimized kernels take int8 tensors only") -> Layer:
    """The C layer of a multiply-accumulate node: geometry ``params`` and the kernel as C stores it, plus the
    bias, per-channel multipliers and shifts, types, zero points and clamp (``p``, for ``_tflite.j2``);
    ``fallback`` says why a reference kernel computes it when the optimized set was asked for."""
    ctx.check_bound(node)
    wide = input_affine(ctx.graph, node).width != 8
    p = {**io_params(ctx.graph, node), "acc_t": "int64_t" if wide else "int32_t"}
    arrays = ctx.typed_arrays(node, p, kernel=("int8_t", kernel),
                              bias=(p["acc_t"], ctx.weights(node, "bias")))
    arrays += requantization_arrays(ctx, node, p)
    return ctx.layer(node, template, {**params, **p, "p": p}, arrays,
                     fallback=fallback if ctx.optimized else None)


def requantization_arrays(ctx: LoweringContext, node: Node, params: dict[str, Any]) -> list:
    """The per-channel ``multiplier`` and ``shift`` arrays of a multiply-accumulate node (names into
    ``params``)."""
    multiplier, shift = linear_requantization(ctx.graph, node, "kernel")
    return ctx.typed_arrays(node, params, multiplier=("int32_t", multiplier), shift=("int32_t", shift))


def block_store(ctx: LoweringContext, node: Node) -> dict[str, Any] | None:
    """The store of the optimized convolution's block kernel for ``node``, or None where that kernel
    cannot compute it: ``suffix`` of the kernel's name, output type ``out_t``, ``wide_input`` (64-bit
    requantization of int16 inputs). The block accumulates in int32 (SMLAD); under int16 inputs TFLite
    accumulates in int64, which gives the same value when every partial sum fits int32:
    ``|bias| + sum|w| x 32768``, checked here."""
    if not ctx.optimized:
        return None
    fin, fout = input_affine(ctx.graph, node), affine(node)
    if fin.width == 16:
        kernel = node.weights["kernel"].astype(np.int64)
        w = np.abs(kernel).reshape(len(kernel), -1).sum(axis=1)
        if int(np.max(np.abs(node.weights["bias"].astype(np.int64)) + w * (1 << 15))) > LONG_MAX:
            return None
    suffix = "" if (fin.width, fout.width) == (8, 8) else f"_i{fin.width}o{fout.width}"
    return {"suffix": suffix, "out_t": c_type(fout), "wide_input": fin.width == 16}


def optimizable(ctx: LoweringContext, node: Node) -> bool:
    """The optimized kernels of the scheme take int8 inputs and outputs (int16 ones use the reference set)."""
    return ctx.optimized and input_affine(ctx.graph, node).width == 8 and affine(node).width == 8


def folded_bias(ctx: LoweringContext, node: Node, kernel: np.ndarray) -> np.ndarray:
    """``bias - zp_in x sum(kernel row)`` per output channel: the optimized kernels multiply the stored input
    values, so the zero point's share is taken out once (a padded tap then holds zp_in and adds nothing)."""
    rows = kernel.reshape(len(kernel), -1).astype(np.int64)
    return ctx.weights(node, "bias") - input_affine(ctx.graph, node).zero_point[0] * rows.sum(axis=1)


# ------------------------------------------------------------------ semantics shared by several operators
class TFLiteSemantics(IntegerSemantics):
    """Integer semantics of the tflite scheme: fused activations are output clamps the operator applies itself
    (the executor does not apply ``max(out, 0)`` after it)."""

    applies_activation = True


class PassThrough(TFLiteSemantics):
    """Values that only move (Flatten, Identity, MaxPool selects): output format = input format."""

    def __init__(self, move: Callable[[Node, np.ndarray], np.ndarray]) -> None:
        self.move = move

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        require_same_format(graph, node)
        lo, hi = activation_range(node, affine(node))
        return np.clip(self.move(node, ins[0]), lo, hi)


class Linear(TFLiteSemantics):
    """Conv, DepthwiseConv, Dense: ``acc = bias + sum w * (x - zp_in)`` (int32, or int64 under int16 inputs),
    requantized per output channel, plus the output zero point, clamped to the activation range.

    ``products(node, x, w)`` is the bias-free sum of products as exact int64 (zero padding contributes
    nothing: the input arrives with its zero point subtracted, so padding with 0 is TFLite's skipped taps).
    """

    def __init__(self, products: Callable[[Node, np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.products = products

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        fin = activation_format(input_affine(graph, node), node, "input")
        fout = activation_format(affine(node), node, "output")
        acc = self.products(node, ins[0] - fin.zero_point[0], node.weights["kernel"].astype(np.int64))
        acc = acc + per_channel(node.weights["bias"].astype(np.int64), acc.ndim)
        multiplier, shift = (per_channel(v, acc.ndim) for v in linear_requantization(graph, node, "kernel"))
        if fin.width == 8:
            acc = check_long(node, acc, "accumulator")
            out = multiply_by_quantized_multiplier(node, acc, multiplier, shift)
        else:
            out = multiply_by_quantized_multiplier_64(node, acc, multiplier, shift)
        lo, hi = activation_range(node, fout)
        return np.clip(out + fout.zero_point[0], lo, hi)

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        """int8 inputs: |bias| + sum |w| x max |x - zp_in| per channel, times 2**left shift (the int32
        multiplication before SRDHM). int16 inputs accumulate in int64 (checked at run time): 0."""
        fin = input_affine(graph, node)
        if fin.width != 8:
            return 0
        zp = fin.zero_point[0]
        reach = max(zp - fin.min_int, fin.max_int - zp)
        w = node.weights["kernel"].astype(np.int64)
        w = np.abs(w.reshape(len(w), -1)).sum(axis=1)
        acc = np.abs(node.weights["bias"].astype(np.int64)) + w * reach
        _, shift = linear_requantization(graph, node, "kernel")
        return int(np.max(acc << np.maximum(shift, 0)))
