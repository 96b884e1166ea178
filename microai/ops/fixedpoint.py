"""gemmlowp's 32-bit fixed-point arithmetic in numpy, as TFLite's int8 SOFTMAX uses it.

A value of ``FixedPoint<int32, I>`` is a raw int32 ``r`` meaning ``r * 2**(I - 31)`` (``I`` integer bits).
Functions take and return int64 arrays holding the raw int32 values; additions wrap modulo 2**32 like
the C code. Transcribed from the semantics of ``third_party/gemmlowp/fixedpoint/fixedpoint.h``
(``exp_on_negative_values``, ``one_over_one_plus_x_for_x_in_0_1``) and TFLite's ``GetReciprocal``
(``tensorflow/lite/kernels/internal/common.h``); the generated C computes the same in
``codegen/templates/*/tflite_softmax.c.j2``.
"""

from __future__ import annotations

import numpy as np

from microai.ops.tflite import LONG_MAX, LONG_MIN, rounding_divide_by_pot, srdhm

#: exp(-2**e) in Q0.31 for e = -2..4, the factors of exp_on_negative_values' barrel shifter.
EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
              (4, 242))


def wrap(v: np.ndarray) -> np.ndarray:
    """int32 wrap-around of int64 values (C's + and - on int32 as compiled)."""
    return ((np.asarray(v, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def one(integer_bits: int) -> int:
    """``FixedPoint<int32, I>::One()``: the largest raw value for I = 0."""
    return LONG_MAX if integer_bits == 0 else 1 << (31 - integer_bits)


def multiply_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """``SaturatingRoundingMultiplyByPOT<exponent>``: saturating left shift, or rounding right shift."""
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    if exponent == 0:
        return x
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, LONG_MAX, np.where(x < -threshold, LONG_MIN, x << exponent))


def rescale(x: np.ndarray, source_bits: int, target_bits: int) -> np.ndarray:
    """``Rescale<target>`` of a ``FixedPoint<int32, source>``."""
    return multiply_by_pot(x, source_bits - target_bits)


def rounding_half_sum(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """``(a + b) / 2`` rounded half away from zero (C division truncates)."""
    total = np.asarray(a, dtype=np.int64) + b
    total = total + np.where(total >= 0, 1, -1)
    return np.where(total >= 0, total // 2, -((-total) // 2))


def exp_on_interval(a: np.ndarray) -> np.ndarray:
    """``exp_on_interval_between_negative_one_quarter_and_0_excl``: Q0.31 in and out (Taylor at -1/8)."""
    constant_term, one_third = 1895147668, 715827883
    x = wrap(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = multiply_by_pot(x4, -2)
    poly = multiply_by_pot(wrap(srdhm(wrap(x4_over_4 + x3), one_third) + x2), -1)
    return wrap(constant_term + srdhm(constant_term, wrap(x + poly)))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """``exp_on_negative_values`` of a ``FixedPoint<int32, integer_bits>`` (a <= 0): Q0.31 result."""
    fractional = 31 - integer_bits
    quarter = 1 << (fractional - 2)
    a_mod = wrap((a & (quarter - 1)) - quarter)
    result = exp_on_interval(rescale(a_mod, integer_bits, 0))
    remainder = wrap(a_mod - a)
    for exponent, factor in EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder >> (fractional + exponent)) & 1
            result = np.where(bit == 1, srdhm(result, factor), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, one(0), result)


def one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """``one_over_one_plus_x_for_x_in_0_1``: 1 / (1 + a) for a Q0.31 in [0, 1), by Newton-Raphson in Q2.29."""
    half_denominator = rounding_half_sum(a, one(0))
    x = wrap(1515870810 + srdhm(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = wrap(one(2) - srdhm(half_denominator, x))
        x = wrap(x + rescale(srdhm(x, one_minus), 4, 2))
    return rescale(x, 1, 0)


def reciprocal(x: np.ndarray, integer_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's ``GetReciprocal`` of a positive ``FixedPoint<int32, integer_bits>``: (Q0.31 scale in [0.5, 1),
    number of bits over unit)."""
    x = np.asarray(x, dtype=np.int64)
    headroom_plus_one = 32 - np.frexp(x.astype(np.float64))[1]  # leading zeros of the uint32 (x > 0)
    shifted_minus_one = wrap(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x(shifted_minus_one), integer_bits - headroom_plus_one
