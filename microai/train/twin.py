"""A model's twin on the native kernels: what training steps and inference compute with.

The twin is a copy of the model, lifted to 2D when it can be (``microai.train.lift``), in the
channels-last format when it is 2D, with its supported layers on the native kernels
(``microai.train.native``). Training's replicas are twins (``microai.train.parallel``); so is the model
that inference (``microai.train.loop``) runs: PyTorch's oneDNN convolutions choose their kernels, and
so the order of their sums, by the CPU's instruction set (an AVX2 and an AVX-512 host give logits that
differ in their last bits), while the native kernels fix that order themselves. A training log's
validation loss is then the same bytes on every CPU, like the checkpoint.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from microai.train.lift import lift_to_2d
from microai.train.native import use_native_kernels


@dataclass
class NativeTwin:
    module: nn.Module
    #: whether ``module`` is the model lifted from 1D to 2D
    lifted: bool
    #: whether ``module`` takes its 4D inputs channels last
    channels_last: bool

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input ``x`` as the twin takes it."""
        if self.lifted:
            x = x.unsqueeze(2)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def native_twin(model: nn.Module) -> NativeTwin:
    """A twin of ``model`` (same parameters and buffers, copied), in ``model``'s training mode."""
    lifted = lift_to_2d(model)
    module = copy.deepcopy(model) if lifted is None else lifted
    channels_last = lifted is not None or any(p.dim() == 4 for p in model.parameters())
    if channels_last:
        module.to(memory_format=torch.channels_last)
    use_native_kernels(module)
    return NativeTwin(module, lifted is not None, channels_last)
