"""Plain convolutional network: ``[Conv -> (BatchNorm) -> ReLU -> (MaxPool)] x depth -> Flatten -> Dense``."""

from __future__ import annotations

from torch import nn

from microai.models import layers


def cnn(input_shape: tuple[int, ...], num_classes: int, filters: int, *, depth: int = 2,
        kernel_size: int = 3, pool: int = 2, batch_norm: bool = False,
        global_pool: bool = False) -> nn.Module:
    """``filters`` channels in every conv; ``pool`` (1 = none) after each conv; ``global_pool`` max-pools
    the remaining samples before the classifier instead of flattening them all."""
    dims = layers.spatial_dims(input_shape, "cnn")
    if depth < 1 or pool < 1:
        raise ValueError(f"model 'cnn': depth and pool must be >= 1, got depth={depth}, pool={pool}")
    modules: list[nn.Module] = []
    channels, spatial = input_shape[0], [int(s) for s in input_shape[1:]]
    for i in range(depth):
        modules.append(layers.conv(dims, channels, filters, kernel_size))
        if batch_norm:
            modules.append(layers.batch_norm(dims, filters))
        modules.append(nn.ReLU())
        if pool > 1:
            modules.append(layers.max_pool(dims, pool))
            spatial = [layers.pool_out(s, pool, f"model 'cnn' layer {i}") for s in spatial]
        channels = filters
    if global_pool:
        modules.append(layers.max_pool(dims, spatial[0] if dims == 1 else (spatial[0], spatial[1])))
        spatial = [1] * dims
    features = channels
    for s in spatial:
        features *= s
    modules += [nn.Flatten(), nn.Linear(features, num_classes)]
    return nn.Sequential(*modules)
