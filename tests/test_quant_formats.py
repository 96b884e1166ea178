"""The paper's Qm.n method (m = 1 + floor(log2 max|x|), n = w - m - 1), conversion and saturation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microai.graph.ir import QFormat
from microai.quant.formats import (
    check_width,
    dequantize,
    format_for,
    frac_bits_for,
    integer_bits_for,
    quantize_array,
    saturate,
)


@pytest.mark.parametrize(
    ("max_abs", "width", "m", "n"),
    [
        (100.0, 16, 7, 8),  # 2**6 <= 100 < 2**7
        (127.9, 16, 7, 8),
        (128.0, 16, 8, 7),  # exact power of two gets one more integer bit
        (1.0, 16, 1, 14),  # m = 1 for max|x| = 1.0, so 1.0 is representable
        (0.99, 16, 0, 15),
        (0.5, 8, 0, 7),
        (0.3, 8, -1, 8),  # max|x| < 0.5: m < 0 and n > w - 1
        (0.01, 8, -6, 13),
        (3.0, 2, 2, -1),  # narrowest width, negative n
        (0.0, 16, 0, 15),  # all-zero convention: n = w - 1
        (0.0, 8, 0, 7),
    ],
)
def test_paper_formula_on_hand_computed_cases(max_abs: float, width: int, m: int, n: int) -> None:
    assert integer_bits_for(max_abs) == m
    assert frac_bits_for(max_abs, width) == n
    assert QFormat(width, n).integer_bits == m


def test_paper_int16_q7_9_is_nine_fractional_bits_for_magnitudes_32_to_64() -> None:
    """The paper's int16 "Q7.9" counts the sign bit: 9 fractional bits, range [-64, 64)."""
    assert [frac_bits_for(v, 16) for v in (31.99, 32.0, 63.99, 64.0)] == [10, 9, 9, 8]
    assert str(QFormat(16, 9)) == "Q6.9"  # QFormat's m excludes the sign bit
    assert dequantize(quantize_array(np.array([-64.0, 64.0]), QFormat(16, 9)), QFormat(16, 9)).tolist() == [
        -64.0, 64.0 - 2.0**-9]


def test_negative_only_tensor_uses_magnitude() -> None:
    assert format_for(np.array([-3.5, -0.1]), 8) == format_for(np.array([3.5]), 8) == QFormat(8, 5)


def test_all_zero_and_empty_tensors_get_the_documented_convention() -> None:
    assert format_for(np.zeros(4), 12) == QFormat(12, 11)
    assert format_for(np.zeros(0), 12) == QFormat(12, 11)


@pytest.mark.parametrize("width", [1, 17, 0, 32])
def test_width_outside_2_to_16_is_rejected_naming_the_limit(width: int) -> None:
    with pytest.raises(ValueError, match="2..16"):
        frac_bits_for(1.0, width)
    with pytest.raises(ValueError, match="2..16"):
        quantize_array(np.ones(2), QFormat(width, 0))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_invalid_magnitudes_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        frac_bits_for(bad, 8)


def test_non_integer_width_is_rejected() -> None:
    with pytest.raises(ValueError, match="integer"):
        check_width(8.0)  # type: ignore[arg-type]


def test_truncation_goes_towards_zero_and_nearest_rounds_half_away() -> None:
    fmt = QFormat(8, 2)  # step 0.25
    x = np.array([0.3, -0.3, 0.375, -0.375, 0.125, -0.125])
    assert quantize_array(x, fmt, "trunc").tolist() == [1, -1, 1, -1, 0, 0]
    assert quantize_array(x, fmt, "nearest").tolist() == [1, -1, 2, -2, 1, -1]


def test_saturation_at_both_ends() -> None:
    fmt = QFormat(8, 4)  # range [-8, 7.9375]
    x = np.array([-1000.0, -8.0, -8.01, 7.9375, 7.99, 1e30])
    assert quantize_array(x, fmt).tolist() == [-128, -128, -128, 127, 127, 127]
    assert saturate(np.array([-(1 << 20), 5, 1 << 20]), 16).tolist() == [-32768, 5, 32767]


def test_power_of_two_maximum_is_not_saturated() -> None:
    x = np.array([1.0, -1.0, 0.5])
    q = quantize_array(x, format_for(x, 8))
    assert dequantize(q, format_for(x, 8)).tolist() == x.tolist()


def test_non_finite_values_and_unknown_rounding_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        quantize_array(np.array([np.nan]), QFormat(8, 4))
    with pytest.raises(ValueError, match="rounding"):
        quantize_array(np.array([1.0]), QFormat(8, 4), "floor")


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(2, 16),
    values=st.lists(st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False), min_size=1, max_size=20),
)
def test_own_format_represents_values_within_one_step(width: int, values: list[float]) -> None:
    """With the format chosen from the data nothing saturates: |x - deq(q)| < 2**-n (trunc)."""
    x = np.array(values)
    fmt = format_for(x, width)
    q = quantize_array(x, fmt)
    assert q.min() >= fmt.min_int and q.max() <= fmt.max_int
    err = np.abs(dequantize(q, fmt) - x)
    assert np.all(err < 2.0 ** -fmt.frac)
    assert np.all(np.abs(dequantize(q, fmt)) <= np.abs(x))  # truncation never grows a magnitude
