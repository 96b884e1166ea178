"""QAT's fake quantization (``microai.quant.qat_modules``) on the native kernels: the float operations of
``_quantize_`` and the ``max|x|`` of ``FakeQuantizer``, for every slice of a batch in one call each, and a
training quantizer's whole step (measure, range, format, quantize) in one call.

Why: a quantizer of a training step applies about six PyTorch operations to each shard's slice of a
small tensor, each costing more in dispatch than in arithmetic; and for the ten or so quantizers of a
step, the Python arithmetic of ranges and formats costs more than the kernel.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence

import torch

from microai.train.native.library import library
from microai.train.native.ops import shard_edges

#: rounding name -> the kernels' code (the roundings of microai.quant.qat_modules.round_scaled)
ROUNDING_CODES = {"trunc": 0, "nearest": 1, "floor": 2, "half_up": 3}

Bounds = Sequence[tuple[int, int]]


def in_native_layout(t: torch.Tensor) -> bool:
    """Whether the kernels can read ``t``: float32 on the CPU, each example's values contiguous (a
    contiguous or channels-last tensor)."""
    return (t.dtype == torch.float32 and t.device.type == "cpu" and t.numel() > 0
            and (t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))))


def whole(t: torch.Tensor) -> tuple[tuple[int, int]]:
    """The one slice that is all of ``t``."""
    return ((0, len(t) if t.dim() else 1),)


def _row(t: torch.Tensor) -> int:
    """Values per example (along dimension 0)."""
    return t.numel() // len(t) if t.dim() else 1


def max_abs_slices(t: torch.Tensor, bounds: Bounds) -> list[float]:
    """``max|t[start:stop]|`` for each slice (NaN for a slice holding a NaN); ``t`` in the native layout."""
    out = (ctypes.c_double * len(bounds))()
    library().max_abs_slices(t.data_ptr(), _row(t), shard_edges(tuple(bounds)), len(bounds), out)
    return list(out)


def quantize_slices_(t: torch.Tensor, bounds: Bounds, fracs: Sequence[int], saturate: Sequence[bool],
                     width: int, rounding: str) -> torch.Tensor:
    """Each slice ``t[start:stop] = sat_w(round(t * 2**frac)) * 2**-frac`` with its own ``frac`` (and
    saturated to the signed ``width`` bits where ``saturate``), in place; ``t`` in the native layout,
    ``|frac| <= 126`` (``2**frac`` and its inverse exact in float32)."""
    limit = 1 << (width - 1)
    scales, inverses, clamps = _factors(tuple(fracs), tuple(saturate))
    library().quantize_slices(t.data_ptr(), _row(t), shard_edges(tuple(bounds)), len(bounds), scales,
                              inverses, clamps, -limit, limit - 1, ROUNDING_CODES[rounding])
    return t


@functools.lru_cache(maxsize=1024)
def _factors(fracs: tuple[int, ...],
             saturate: tuple[bool, ...]) -> tuple[ctypes.Array, ctypes.Array, ctypes.Array]:
    """The kernel's arrays of ``2**frac``, ``2**-frac`` and saturation flags of the slices (cached: a
    quantizer's formats recur from step to step; the kernel only reads them)."""
    count = len(fracs)
    return ((ctypes.c_float * count)(*(2.0 ** f for f in fracs)),
            (ctypes.c_float * count)(*(2.0 ** -f for f in fracs)), (ctypes.c_uint8 * count)(*saturate))


def observe_quantize_(t: torch.Tensor, bounds: Bounds, peaks: Sequence[float] | None, previous: float | None,
                      momentum: float, width: int, rounding: str,
                      relu: bool = False) -> tuple[list[float], tuple[int, ...]] | None:
    """What a training ``FakeQuantizer`` (per layer) does to each slice ``t[start:stop]`` as its own batch, in
    place and in one call: ``max|slice|`` (the ``peaks`` of these slices, or measured), its range (the
    ``max`` itself, or with ``previous`` the moving average ``momentum * previous + (1 - momentum) * max``),
    the format ``frac_bits_for(range, width)`` and the quantization in it, saturated where ``_may_saturate``;
    ``relu``: then rectified. Returns (ranges, fracs); None, with ``t`` unchanged, when a range is not a
    finite number >= 0 or a format is beyond the kernel's ``|frac| <= 126`` (for the caller's own operations).
    ``t`` in the native layout."""
    count = len(bounds)
    ranges, fracs = (ctypes.c_double * count)(), (ctypes.c_int * count)()
    given = None if peaks is None else (ctypes.c_double * count)(*peaks)
    average = previous is not None
    if library().observe_quantize(t.data_ptr(), _row(t), shard_edges(tuple(bounds)), count, given, average,
                                  previous if average else 0.0, momentum, 1.0 - momentum, width,
                                  ROUNDING_CODES[rounding], relu, ranges, fracs):
        return None
    return list(ranges), tuple(fracs)
