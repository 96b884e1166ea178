"""Model zoo: the paper's ResNetv1-6 and configurable ResNet, CNN and MLP (PyTorch, torch.fx-traceable).

Every model is built from ``nn.Conv1d/2d`` (integer padding), ``nn.MaxPool1d/2d``, ``nn.BatchNorm1d/2d``,
``nn.ReLU``, ``nn.Flatten``, ``nn.Linear`` and ``+``, the operators the graph importer supports.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from microai.models.cnn import cnn
from microai.models.mlp import mlp
from microai.models.resnet import resnet

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnetv1-6": resnet,
    "resnet": resnet,
    "cnn": cnn,
    "mlp": mlp,
}
#: Options each model accepts (``resnetv1-6`` is the paper's exact network: none).
_OPTIONS: dict[str, frozenset[str]] = {
    name: frozenset() if name == "resnetv1-6" else frozenset(
        p.name for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY)
    for name, fn in _BUILDERS.items()
}

MODELS: tuple[str, ...] = tuple(_BUILDERS)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, filters: int,
                **options: object) -> nn.Module:
    """Build model ``name`` for inputs ``input_shape`` (without batch) and ``num_classes`` outputs.

    ``filters`` is the number of channels of every conv (ResNet, CNN) or units of every hidden layer (MLP).
    Unknown names or options raise ``ValueError`` naming them.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model '{name}'; available: {', '.join(MODELS)}")
    unknown = sorted(set(options) - _OPTIONS[name])
    if unknown:
        accepted = ", ".join(sorted(_OPTIONS[name])) or "none"
        raise ValueError(f"model '{name}': unknown option(s) {unknown}; accepted: {accepted}")
    for what, value in (("filters", filters), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"model '{name}': {what} must be a positive int, got {value!r}")
    return _BUILDERS[name](tuple(int(s) for s in input_shape), num_classes, filters, **options)


__all__ = ["MODELS", "build_model"]
