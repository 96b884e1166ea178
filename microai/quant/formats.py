"""The paper's power-of-two fixed-point formats (Novac et al. 2021, Section 4.1.4).

A tensor whose largest magnitude is ``max|x|`` gets ``m = 1 + floor(log2(max|x|))``
integer bits and ``n = w - m - 1`` fractional bits; a value is stored as
``sat_w(trunc(x * 2**n))``.

Edge cases (all follow from the formula except the first, which is a convention):

* ``max|x| == 0`` (an all-zero tensor): ``n = w - 1`` (the format of ``[-1, 1)``), so a
  zero tensor gets the same format as a tensor with ``0.5 <= max|x| < 1``.
* ``max|x| < 0.5``: ``m`` is negative and ``n > w - 1`` (small values keep precision).
* exact powers of two: ``max|x| = 1.0`` gives ``m = 1`` (``log2`` is exact), so ``1.0`` is
  representable without saturation.
* negative-only tensors: only the magnitude matters (callers pass ``max(|x|)``).
"""

from __future__ import annotations

import math

import numpy as np

from microai.graph.ir import QFormat

MIN_WIDTH = 2
MAX_WIDTH = 16
QUANT_ROUNDINGS = ("trunc", "nearest")


def check_width(width: int) -> int:
    """Return ``width`` if it is an integer in ``MIN_WIDTH..MAX_WIDTH``; raise ValueError otherwise."""
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)):
        raise ValueError(f"fixed-point width must be an integer, got {width!r}")
    if not MIN_WIDTH <= width <= MAX_WIDTH:
        raise ValueError(f"fixed-point width {width} outside the supported range {MIN_WIDTH}..{MAX_WIDTH}")
    return int(width)


def integer_bits_for(max_abs: float) -> int:
    """The paper's ``m = 1 + floor(log2(max|x|))``; 0 for an all-zero tensor (see module doc)."""
    max_abs = float(max_abs)
    if not math.isfinite(max_abs) or max_abs < 0:
        raise ValueError(f"max|x| must be finite and >= 0, got {max_abs}")
    if max_abs == 0.0:
        return 0
    # math.frexp is exact: max_abs = f * 2**e with 0.5 <= f < 1, so floor(log2(max_abs)) = e - 1.
    return math.frexp(max_abs)[1]


def frac_bits_for(max_abs: float, width: int) -> int:
    """Fractional bits ``n = w - m - 1`` for a tensor of largest magnitude ``max_abs``."""
    return check_width(width) - integer_bits_for(max_abs) - 1


def format_for(x: np.ndarray | float, width: int) -> QFormat:
    """The format of the paper's method for the values ``x`` (array or precomputed max|x|)."""
    max_abs = float(np.max(np.abs(x))) if np.size(x) else 0.0
    return QFormat(check_width(width), frac_bits_for(max_abs, width))


def saturate(q: np.ndarray, width: int) -> np.ndarray:
    """Clamp integers to the signed ``width``-bit range ``[-2**(w-1), 2**(w-1) - 1]``."""
    return np.clip(q, -(1 << (width - 1)), (1 << (width - 1)) - 1)


def quantize_array(x: np.ndarray, fmt: QFormat, rounding: str = "trunc") -> np.ndarray:
    """``sat_w(round(x * 2**n))`` as int64; ``rounding`` is ``trunc`` (the paper) or ``nearest``.

    ``nearest`` rounds half away from zero (as C's ``roundf``).
    """
    check_width(fmt.width)
    if rounding not in QUANT_ROUNDINGS:
        raise ValueError(f"quantization rounding must be one of {QUANT_ROUNDINGS}, got '{rounding}'")
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"cannot quantize non-finite values to {fmt}")
    scaled = np.ldexp(x, fmt.frac)
    rounded = np.trunc(scaled) if rounding == "trunc" else np.trunc(scaled + np.copysign(0.5, scaled))
    # Saturate in float so that huge values cannot overflow the int64 conversion.
    return np.clip(rounded, fmt.min_int, fmt.max_int).astype(np.int64)


def dequantize(q: np.ndarray, fmt: QFormat) -> np.ndarray:
    """Integers in ``fmt`` back to real values (float64, exact)."""
    return np.ldexp(np.asarray(q, dtype=np.float64), -fmt.frac)
