"""Sliding windows in numpy, shared by the float and integer references of Conv and pooling.

Integer convolutions are computed as float64 matrix products: every product of two w-bit
integers (w <= 16) is below 2**30 and every partial sum stays far below 2**53, so the BLAS
result is the exact integer sum.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def windows(x: np.ndarray, kernel: list[int], stride: list[int]) -> np.ndarray:
    """(N, C, *S) -> (N, C, *out, *kernel) strided view of the sliding windows."""
    axes = tuple(range(2, 2 + len(kernel)))
    w = sliding_window_view(x, kernel, axis=axes)
    return w[(slice(None), slice(None), *[slice(None, None, s) for s in stride])]


def zero_pad(x: np.ndarray, padding: list[int]) -> np.ndarray:
    """Pad (N, C, *S) with zeros; ``padding`` is [before, after] per spatial axis."""
    dims = x.ndim - 2
    return np.pad(x, [(0, 0), (0, 0)] + [(padding[2 * d], padding[2 * d + 1]) for d in range(dims)])


def conv_sum(x: np.ndarray, kernel: np.ndarray, stride: list[int], padding: list[int],
             dtype: type) -> np.ndarray:
    """Sum of products of a convolution without bias, computed in ``dtype``; (N, out, *spatial)."""
    dims = kernel.ndim - 2
    win = windows(zero_pad(x.astype(dtype), padding), list(kernel.shape[2:]), stride)
    n, c, *out = win.shape[:2 + dims]
    cols = np.moveaxis(win, 1, 1 + dims).reshape(n * int(np.prod(out)), -1)
    y = cols @ kernel.astype(dtype).reshape(len(kernel), -1).T
    return np.moveaxis(y.reshape(n, *out, len(kernel)), -1, 1)


def pool_windows(x: np.ndarray, pool: list[int], stride: list[int]) -> np.ndarray:
    """(N, C, *out, window) values of every pooling window, flattened."""
    win = windows(x, pool, stride)
    return win.reshape(*win.shape[:-len(pool)], -1)
