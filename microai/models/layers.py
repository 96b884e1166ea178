"""Dimension-generic layer constructors (1D signals ``(C, L)`` or 2D images ``(C, H, W)``).

Convolutions use integer "same" padding (``k // 2``), so kernel sizes must be odd: PyTorch's
``padding=int`` is symmetric, and an even kernel would change the length.
"""

from __future__ import annotations

from torch import nn


def spatial_dims(input_shape: tuple[int, ...], model: str) -> int:
    """1 for ``(C, L)``, 2 for ``(C, H, W)``; anything else is an error naming the model."""
    if len(input_shape) not in (2, 3) or any(int(s) < 1 for s in input_shape):
        raise ValueError(
            f"model '{model}': input_shape must be (C, L) or (C, H, W) with positive sizes, got {input_shape}"
        )
    return len(input_shape) - 1


def conv(dims: int, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Module:
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer ('same' padding), got {kernel_size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    return cls(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def max_pool(dims: int, size: int | tuple[int, int]) -> nn.Module:
    return nn.MaxPool1d(size) if dims == 1 else nn.MaxPool2d(size)


def batch_norm(dims: int, channels: int) -> nn.Module:
    return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)


def conv_out(size: int, kernel_size: int, stride: int) -> int:
    """Output length of a 'same'-padded convolution."""
    return (size + 2 * (kernel_size // 2) - kernel_size) // stride + 1


def pool_out(size: int, pool: int, where: str) -> int:
    if pool > size:
        raise ValueError(f"{where}: pool size {pool} larger than the remaining length {size}")
    return size // pool
