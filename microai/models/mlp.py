"""Multi-layer perceptron: ``Flatten -> [Dense(filters) -> ReLU] x depth -> Dense(num_classes)``."""

from __future__ import annotations

import math

from torch import nn


def mlp(input_shape: tuple[int, ...], num_classes: int, filters: int, *, depth: int = 2) -> nn.Module:
    """``filters`` is the width of every hidden layer (accepts any input shape)."""
    if depth < 0:
        raise ValueError(f"model 'mlp': depth must be >= 0, got {depth}")
    modules: list[nn.Module] = [nn.Flatten()]
    features = math.prod(int(s) for s in input_shape)
    for _ in range(depth):
        modules += [nn.Linear(features, filters), nn.ReLU()]
        features = filters
    modules.append(nn.Linear(features, num_classes))
    return nn.Sequential(*modules)
