"""Training a 1D model as a 2D one: ``(N, C, L)`` signals as ``(N, C, 1, L)`` images, channels last.

PyTorch's CPU kernels for 1D convolution and max pooling are much slower than its channels-last 2D
ones (oneDNN): ResNetv1-6 on UCI-HAR trains about twice as fast lifted to 2D. :func:`lift_to_2d`
builds a twin of a model in which every 1D layer is its 2D counterpart over a height of 1 (same
parameters with a height dimension of 1: the same function), or returns None when the model has a
module whose 2D twin it does not know, or whose forward it cannot vouch for.

A module class whose forward only calls its submodules, adds tensors and flattens from dimension 1
(nothing that names a dimension of the signal) says so with ``lifts_to_2d = True``; ``nn.Sequential``
and torch.fx graphs made of such calls qualify without it.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

#: Modules that compute the same on ``(N, C, 1, L)`` as on ``(N, C, L)`` (elementwise or last dimension).
_UNCHANGED = (nn.ReLU, nn.Identity, nn.Dropout, nn.Linear)
#: torch.fx calls that compute the same on a lifted tensor (flatten: checked separately).
_FX_FUNCTIONS = (operator.add, torch.add, torch.relu, F.relu)
_FX_METHODS = ("add", "relu")


def _one(value: int | tuple[int, ...]) -> int:
    return value if isinstance(value, int) else value[0]


def _conv(m: nn.Conv1d) -> nn.Conv2d:
    padding = m.padding if isinstance(m.padding, str) else (0, _one(m.padding))
    twin = nn.Conv2d(m.in_channels, m.out_channels, (1, _one(m.kernel_size)), (1, _one(m.stride)), padding,
                     (1, _one(m.dilation)), m.groups, m.bias is not None, m.padding_mode)
    twin.weight = nn.Parameter(m.weight.detach().unsqueeze(2).clone(), m.weight.requires_grad)
    if m.bias is not None:
        twin.bias = nn.Parameter(m.bias.detach().clone(), m.bias.requires_grad)
    return twin


def _max_pool(m: nn.MaxPool1d) -> nn.MaxPool2d | None:
    if m.return_indices:
        return None
    return nn.MaxPool2d((1, _one(m.kernel_size)), (1, _one(m.stride)), (0, _one(m.padding)),
                        (1, _one(m.dilation)), ceil_mode=m.ceil_mode)


def _avg_pool(m: nn.AvgPool1d) -> nn.AvgPool2d:
    return nn.AvgPool2d((1, _one(m.kernel_size)), (1, _one(m.stride)), (0, _one(m.padding)), m.ceil_mode,
                        m.count_include_pad)


def _batch_norm(m: nn.BatchNorm1d) -> nn.BatchNorm2d:
    twin = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    twin.load_state_dict(m.state_dict())
    if m.affine:
        twin.weight.requires_grad_(m.weight.requires_grad)
        twin.bias.requires_grad_(m.bias.requires_grad)
    return twin


#: 1D module type -> its 2D twin over a height of 1 (None: no twin for this configuration)
_TWINS: dict[type, Callable[..., nn.Module | None]] = {
    nn.Conv1d: _conv,
    nn.MaxPool1d: _max_pool,
    nn.AvgPool1d: _avg_pool,
    nn.BatchNorm1d: _batch_norm,
    nn.AdaptiveMaxPool1d: lambda m: None if m.return_indices else nn.AdaptiveMaxPool2d((1, m.output_size)),
    nn.AdaptiveAvgPool1d: lambda m: nn.AdaptiveAvgPool2d((1, m.output_size)),
    nn.ConstantPad1d: lambda m: nn.ConstantPad2d((*m.padding, 0, 0), m.value),
}


def _flattens_from_1(n: fx.Node) -> bool:
    if not ((n.op == "call_function" and n.target is torch.flatten) or (n.op == "call_method"
                                                                        and n.target == "flatten")):
        return False
    args = {**dict(zip(("input", "start_dim", "end_dim"), n.args, strict=False)), **n.kwargs}
    return args.get("start_dim", 0) in (0, 1) and args.get("end_dim", -1) == -1


def _fx_calls_lift(graph: fx.Graph) -> bool:
    for n in graph.nodes:
        if n.op in ("placeholder", "output", "get_attr", "call_module") or _flattens_from_1(n):
            continue
        if not ((n.op == "call_function" and n.target in _FX_FUNCTIONS)
                or (n.op == "call_method" and n.target in _FX_METHODS)):
            return False
    return True


def composes_submodules(m: nn.Module) -> bool:
    """Whether ``m``'s own forward only calls its submodules, adds tensors, applies ReLU and flattens
    from dimension 1: ``nn.Sequential``, torch.fx graphs of such calls and classes that say
    ``per_example = True`` (not ``lifts_to_2d``, which layers that keep per-batch state also say)."""
    if isinstance(m, fx.GraphModule):
        return _fx_calls_lift(m.graph)
    # a plain nn.Module has no forward: torch.fx keeps a graph's submodules in such holders
    return type(m) in (nn.Module, nn.Sequential) or bool(getattr(m, "per_example", False))


def _forward_lifts(m: nn.Module) -> bool:
    if isinstance(m, nn.Flatten):
        return m.start_dim in (0, 1) and m.end_dim == -1
    return type(m) in _UNCHANGED or composes_submodules(m) or bool(getattr(m, "lifts_to_2d", False))


def lift_to_2d(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` whose 1D layers are 2D over a height of 1, taking ``x.unsqueeze(2)``; None if
    ``model`` has no 1D layer or a module that cannot be lifted (see the module docstring).

    Parameters and buffers keep their names; a lifted convolution's weight gains dimension 2 (size 1).
    Modules shared between parents stay shared.
    """
    modules = list(model.modules())  # decided on the model itself: a model that does not lift is not copied
    if not any(type(m) in _TWINS for m in modules) or not all(type(m) in _TWINS or _forward_lifts(m)
                                                                for m in modules):
        return None
    twin = copy.deepcopy(model)
    twins: dict[int, nn.Module] = {}
    for m in twin.modules():
        if type(m) in _TWINS:
            lifted = _TWINS[type(m)](m)
            if lifted is None:  # a configuration without a 2D twin (a max pool returning indices)
                return None
            lifted.train(m.training)
            twins[id(m)] = lifted
    for m in list(twin.modules()):
        for name, child in list(m._modules.items()):  # named_children() yields a module under one name only
            if id(child) in twins:
                setattr(m, name, twins[id(child)])
    return twin


def to_model_shape(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (a lifted twin's parameter or gradient) viewed with the shape of the model's ``like``."""
    return t.squeeze(2) if t.dim() == like.dim() + 1 else t
