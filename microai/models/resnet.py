"""ResNet v1 for 1D signals and 2D images, with the paper's ResNetv1-6 as the default configuration.

The paper replaces the strided convolutions of Keras' ResNet v1 by max pooling, so a block that
downsamples is ``Conv -> MaxPool -> ReLU -> Conv`` with a ``1x1 Conv -> MaxPool`` shortcut. A block
whose input and output shapes are equal uses the identity shortcut.
"""

from __future__ import annotations

import torch
from torch import nn

from microai.models import layers


class ResidualBlock(nn.Module):
    """``relu(body(x) + shortcut(x))``; ``shortcut`` is ``None`` for the identity."""

    lifts_to_2d = True  # microai.train.lift: forward only calls submodules and adds
    per_example = True  # microai.train.shard: so it computes each example apart

    def __init__(self, dims: int, in_channels: int, out_channels: int, kernel_size: int,
                 pool: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        body: list[nn.Module] = [layers.conv(dims, in_channels, out_channels, kernel_size, stride)]
        if batch_norm:
            body.append(layers.batch_norm(dims, out_channels))
        if pool > 1:
            body.append(layers.max_pool(dims, pool))
        body += [nn.ReLU(), layers.conv(dims, out_channels, out_channels, kernel_size)]
        if batch_norm:
            body.append(layers.batch_norm(dims, out_channels))
        self.body = nn.Sequential(*body)
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels or pool > 1 or stride > 1:
            shortcut: list[nn.Module] = [layers.conv(dims, in_channels, out_channels, 1, stride)]
            if batch_norm:
                shortcut.append(layers.batch_norm(dims, out_channels))
            if pool > 1:
                shortcut.append(layers.max_pool(dims, pool))
            self.shortcut = nn.Sequential(*shortcut)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.body(x) + skip)


class ResNet(nn.Module):
    """Stem conv + ReLU, residual blocks, global max pool, flatten, dense classifier."""

    lifts_to_2d = True  # microai.train.lift: forward only calls submodules
    per_example = True  # microai.train.shard: so it computes each example apart

    def __init__(self, stem: nn.Module, blocks: nn.Module, global_pool: nn.Module,
                 classifier: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.global_pool = global_pool
        self.flatten = nn.Flatten()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.global_pool(self.blocks(self.stem(x)))))


def _per_block(value: int | list[int], blocks: int, option: str) -> list[int]:
    values = [value] * blocks if isinstance(value, int) else list(value)
    if len(values) != blocks or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ValueError(f"model 'resnet': option '{option}' must be a positive int or a list of "
                         f"{blocks} positive ints (one per block), got {value!r}")
    return values


def resnet(input_shape: tuple[int, ...], num_classes: int, filters: int, *, blocks: int = 2,
           kernel_size: int | list[int] = 3, pools: int | list[int] | None = None,
           strides: int | list[int] = 1, block_filters: list[int] | None = None,
           batch_norm: bool = False) -> ResNet:
    """A ResNet v1; the defaults build the paper's ResNetv1-6.

    ``pools``/``strides``/``kernel_size``/``block_filters`` are per block (an int applies to all);
    ``pools`` defaults to 2 for the first block and 1 (none) after it.
    """
    dims = layers.spatial_dims(input_shape, "resnet")
    if not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"model 'resnet': option 'blocks' must be a positive int, got {blocks!r}")
    kernels = _per_block(kernel_size, blocks, "kernel_size")
    pool_sizes = _per_block([2] + [1] * (blocks - 1) if pools is None else pools, blocks, "pools")
    stride_list = _per_block(strides, blocks, "strides")
    widths = _per_block(filters if block_filters is None else block_filters, blocks, "block_filters")

    stem: list[nn.Module] = [layers.conv(dims, input_shape[0], filters, kernels[0])]
    if batch_norm:
        stem.append(layers.batch_norm(dims, filters))
    stem.append(nn.ReLU())

    spatial = [int(s) for s in input_shape[1:]]
    body, channels = [], filters
    for i in range(blocks):
        body.append(ResidualBlock(dims, channels, widths[i], kernels[i], pool_sizes[i], stride_list[i],
                                  batch_norm))
        spatial = [layers.pool_out(layers.conv_out(s, kernels[i], stride_list[i]), pool_sizes[i],
                                   f"model 'resnet' block {i}") for s in spatial]
        channels = widths[i]
    global_pool = layers.max_pool(dims, spatial[0] if dims == 1 else (spatial[0], spatial[1]))
    return ResNet(nn.Sequential(*stem), nn.Sequential(*body), global_pool, nn.Linear(channels, num_classes))
