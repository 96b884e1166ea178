"""Convolution (and linear layers as 1 x 1 convolutions) and max pooling as autograd functions over the
native kernels, and the module classes sharded training swaps in (:func:`use_native_kernels`).

Why: a shard of the paper's models is a few dozen examples, where PyTorch's oneDNN convolutions cost
more in per-call set-up (about 35 us forward, 160 us backward, against 7 us of arithmetic at 2
examples) than in arithmetic; these kernels have none, and fix the order of every sum themselves.
Layers outside what the kernels do (strides, dilation, groups, other padding modes, float64) keep
PyTorch's.
"""

from __future__ import annotations

import ctypes
import functools
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function
from torch.nn.modules.utils import _pair

from microai.train.native.library import library


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


@functools.lru_cache(maxsize=256)
def shard_edges(bounds: tuple[tuple[int, int], ...]) -> ctypes.Array:
    """The kernels' form of the adjacent shard ``bounds`` (start, stop): edges[s] <= n < edges[s + 1] in
    shard s (cached: a step's few bounds come back at every layer; the kernels only read it)."""
    return (ctypes.c_int * (len(bounds) + 1))(*(start for start, _ in bounds), bounds[-1][1])


@dataclass
class Peaks:
    """``max|y|`` of each shard of a native layer's output ``y`` (NaN for a shard holding a NaN), taken as the
    kernel wrote it: QAT's output quantizer reads them instead of reading ``y`` again."""

    #: (start, stop) of each shard in the batch (none: not measured)
    bounds: tuple[tuple[int, int], ...] = ()
    values: tuple[float, ...] = ()
    #: asked by the caller, which rectifies ``y`` in place (unseen by autograd) before the backward pass: a
    #: native layer then takes that ReLU's gradient from ``y`` as it is by then, and sets ``relu_taken``
    relu_after: bool = False
    relu_taken: bool = False


def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, ph: int, pw: int,
          bounds: tuple[tuple[int, int], ...] | None = None, transposed: bool = False,
          relu: bool = False, peaks: Peaks | None = None) -> torch.Tensor:
    """conv_forward of channels-last ``x`` with PyTorch's ``weight``; ``transposed``: the input gradient's
    convolution (``x`` is dy; the kernel flipped, inputs and outputs swapped). ``bias`` is ``(Co,)``, or
    ``(shards, Co)``: shard s of ``bounds`` takes ``bias[s]``. ``relu``: ``torch.relu`` of the result, as
    it is written. ``peaks``: set to the result's ``max|y|`` of each shard of ``bounds``."""
    n, c, h, w = x.shape
    co, ci, kh, kw = weight.shape
    channels = ci if transposed else co
    y = torch.empty((n, channels, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1),
                    memory_format=torch.channels_last)
    per_part = bias is not None and bias.dim() == 2
    parts = bounds if bounds is not None and (per_part or peaks is not None) else ((0, n),)
    maxima = None if peaks is None else (ctypes.c_double * len(parts))()
    edges = shard_edges(parts)
    if library().conv_forward(x.data_ptr(), h, w, c, weight.data_ptr(), *weight.stride(), int(transposed),
                              _ptr(bias), bias.stride(0) if per_part else 0, edges, len(parts), kh, kw,
                              ph, pw, y.data_ptr(), channels, int(relu), maxima):
        raise MemoryError("conv_forward: no memory for the packed kernel or a block of inputs")
    if peaks is not None:
        peaks.bounds, peaks.values = parts, tuple(maxima)
    return y


@dataclass
class ShardPass:
    """A forward pass over several shards of a batch at once (see :func:`shard_pass`)."""

    #: (start, stop) of each shard in the batch
    bounds: tuple[tuple[int, int], ...]
    #: how many times each kernel (by id) was applied in the pass
    uses: Counter[int] = field(default_factory=Counter)
    #: whether a layer with parameters ran on PyTorch's kernels (whose gradients sum over the batch)
    fell_back: bool = False
    #: fractional bits of each shard's values of the tensors a QAT quantizer formatted shard by shard
    #: (``microai.quant.qat_modules``), keyed by the id of the quantizer's ``frac`` buffer
    formats: dict[int, tuple[int, ...]] = field(default_factory=dict)

    @property
    def per_shard(self) -> bool:
        """Whether every parameter's gradient is the ordered sum of the shards': no layer ran twice (its
        gradient would sum over its calls before the shards) or on PyTorch's kernels."""
        return not self.fell_back and all(count == 1 for count in self.uses.values())


_PASS: ContextVar[ShardPass | None] = ContextVar("shard_pass", default=None)


def current_pass() -> ShardPass | None:
    """The :func:`shard_pass` this forward runs in, if any."""
    return _PASS.get()


def _fall_back() -> None:
    current = _PASS.get()
    if current is not None:
        current.fell_back = True


@contextmanager
def shard_pass(bounds: Sequence[tuple[int, int]]) -> Iterator[ShardPass]:
    """Within it, the native layers' kernel and bias gradients are summed per shard, then over the
    shards in order: what the shards computed one by one and summed in order would give."""
    current = ShardPass(tuple(bounds))
    token = _PASS.set(current)
    try:
        yield current
    finally:
        _PASS.reset(token)


def _weight_grads(x: torch.Tensor, dy: torch.Tensor, weight: torch.Tensor, with_bias: bool, ph: int, pw: int,
                  bounds: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernel and bias gradients of each shard of channels-last ``x`` and ``dy``, summed in shard order."""
    co, ci, kh, kw = weight.shape
    _, _, h, w = x.shape
    dw = weight.new_empty((co, ci, kh, kw))
    db = weight.new_empty(co) if with_bias else None
    if library().conv_backward_weight(x.data_ptr(), h, w, ci, dy.data_ptr(), co, kh, kw, ph, pw,
                                      shard_edges(bounds), len(bounds), dw.data_ptr(), _ptr(db)):
        raise MemoryError("conv_backward_weight: no memory for its sums")
    return dw, db


class _Conv2d(Function):
    """A convolution, and with ``relu`` the ReLU that follows it (or with ``peaks.relu_after``, the gradient
    of a ReLU its caller applies); in a :func:`shard_pass`, ``shard_bias`` (``(shards, Co)`` values, or
    None) gives each shard its own bias in the forward pass, while the gradient goes to ``bias`` (each
    shard's bias is ``bias`` rounded to that shard's format: a straight-through QAT alignment)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, ph: int, pw: int,
                shard_bias: torch.Tensor | None = None, relu: bool = False,
                peaks: Peaks | None = None) -> torch.Tensor:
        x = _nhwc(x)
        relu_after = peaks is not None and peaks.relu_after
        ctx.padding, ctx.relu = (ph, pw), relu or relu_after
        current = _PASS.get()
        if current is None:
            ctx.bounds = ((0, len(x)),)
        else:
            ctx.bounds = current.bounds
            current.uses[id(weight)] += 1
        bias = bias if shard_bias is None else shard_bias.detach()
        y = _conv(x, weight, None if bias is None else bias.contiguous(), ph, pw, ctx.bounds, relu=relu,
                  peaks=peaks)
        ctx.save_for_backward(x, weight, y if ctx.relu else None)
        if relu_after:
            peaks.relu_taken = True
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple:
        x, weight, y = ctx.saved_tensors
        if ctx.relu:  # ReLU's gradient, PyTorch's operation
            dy = torch.ops.aten.threshold_backward(dy, y, 0)
        (ph, pw), dy = ctx.padding, _nhwc(dy)
        kh, kw = weight.shape[2:]
        dx = dw = db = None
        if ctx.needs_input_grad[0]:  # a forward convolution of dy with the flipped, transposed kernel
            dx = _conv(dy, weight, None, kh - 1 - ph, kw - 1 - pw, transposed=True)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            dw, db = _weight_grads(x, dy, weight, ctx.needs_input_grad[2], ph, pw, ctx.bounds)
        return dx, dw, db, None, None, None, None, None


class _MaxPool2d(Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
        x = _nhwc(x)
        n, c, h, w = x.shape
        y = torch.empty((n, c, h // kh, w // kw), memory_format=torch.channels_last)
        where = torch.empty(y.shape, dtype=torch.int32)  # position in the window
        library().max_pool_forward(x.data_ptr(), n, h, w, c, kh, kw, y.data_ptr(), where.data_ptr())
        ctx.save_for_backward(where)
        ctx.geometry = n, h, w, c, kh, kw
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple:
        (where,) = ctx.saved_tensors
        n, h, w, c, kh, kw = ctx.geometry
        dy = _nhwc(dy)  # kept alive through the call
        dx = torch.empty((n, c, h, w), memory_format=torch.channels_last)
        library().max_pool_backward(dy.data_ptr(), where.data_ptr(), n, h, w, c, kh, kw, dx.data_ptr())
        return dx, None, None


def _native_dtype(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or (t.dtype is torch.float32 and t.is_cpu) for t in tensors)


class NativeConv2d(nn.Conv2d):
    """``nn.Conv2d`` on the native kernels (stride 1, dilation 1, one group, zero padding of at most
    kernel - 1: see :func:`conv_supported`), PyTorch's for other dtypes. With ``relu`` set (by
    :func:`use_native_kernels`), it is also the ReLU that followed it."""

    relu = False

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                      shard_bias: torch.Tensor | None = None, peaks: Peaks | None = None) -> torch.Tensor:
        ph, pw = self.padding
        kh, kw = weight.shape[2:]
        if (not _native_dtype(x, weight, bias) or x.dim() != 4 or x.shape[2] + 2 * ph < kh
                or x.shape[3] + 2 * pw < kw):
            _fall_back()
            y = super()._conv_forward(x, weight, bias)
            return torch.relu(y) if self.relu else y
        return _Conv2d.apply(x, weight, bias, ph, pw, shard_bias, self.relu, peaks)


class NativeLinear(nn.Linear):
    """``nn.Linear`` as a 1 x 1 convolution on the native kernels, for ``(N, features)`` inputs (PyTorch's
    for others): in a :func:`shard_pass`, its gradients are per shard like the convolutions'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x, self.weight, self.bias)

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               shard_bias: torch.Tensor | None = None, peaks: Peaks | None = None) -> torch.Tensor:
        """This layer's function with ``weight`` and ``bias`` (``shard_bias``, ``peaks``: see
        :func:`layer_forward`)."""
        if not _native_dtype(x, weight, bias) or x.dim() != 2:
            _fall_back()
            return F.linear(x, weight, bias)
        return _Conv2d.apply(x[:, :, None, None], weight[:, :, None, None], bias, 0, 0, shard_bias, False,
                             peaks).flatten(1)


def layer_forward(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  shard_bias: torch.Tensor | None = None, peaks: Peaks | None = None) -> torch.Tensor:
    """A ``Conv2d``'s or ``Linear``'s function of ``x`` with ``weight`` and ``bias`` in place of its
    parameters. In a :func:`shard_pass`, ``shard_bias`` (``(shards, out features)`` values) is each
    shard's bias in the forward pass, the gradient going to ``bias`` (native layers only: on
    PyTorch's, the pass falls back to shard by shard). ``peaks``: a native layer sets them to its
    output's ``max|y|`` per shard of the pass (the whole batch outside one); others leave them."""
    if isinstance(layer, NativeConv2d):
        return layer._conv_forward(x, weight, bias, shard_bias, peaks)
    if isinstance(layer, NativeLinear):
        return layer.linear(x, weight, bias, shard_bias, peaks)
    _fall_back()
    return F.linear(x, weight, bias) if isinstance(layer, nn.Linear) else layer._conv_forward(x, weight, bias)


class NativeMaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` on the native kernel (window = stride, no padding or dilation: see
    :func:`pool_supported`), PyTorch's for other dtypes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = _pair(self.kernel_size)
        if not _native_dtype(x) or x.dim() != 4 or x.shape[2] < kh or x.shape[3] < kw:
            return super().forward(x)
        return _MaxPool2d.apply(x, kh, kw)


def conv_supported(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.stride == (1, 1) and m.dilation == (1, 1) and m.groups == 1
            and m.padding_mode == "zeros" and not isinstance(m.padding, str)
            and all(0 <= p < k for p, k in zip(m.padding, m.kernel_size, strict=True)))


def linear_supported(m: nn.Module) -> bool:
    return type(m) is nn.Linear


def pool_supported(m: nn.Module) -> bool:
    return (type(m) is nn.MaxPool2d and _pair(m.stride) == _pair(m.kernel_size) and _pair(m.padding) == (0, 0)
            and _pair(m.dilation) == (1, 1) and not m.ceil_mode and not m.return_indices)


def use_native_kernels(model: nn.Module) -> int:
    """Turns ``model``'s supported ``nn.Conv2d``, ``nn.Linear`` and ``nn.MaxPool2d`` into their native
    subclasses (same parameters and state: only the class changes), and a ``nn.ReLU`` that follows a
    native convolution in an ``nn.Sequential`` into an ``nn.Identity``, the convolution applying it as it
    writes its output (one pass over the activations instead of two); returns how many layers it
    swapped. Builds the kernels if needed."""
    swapped = 0
    for m in model.modules():
        for supported, cls in ((conv_supported, NativeConv2d), (linear_supported, NativeLinear),
                               (pool_supported, NativeMaxPool2d)):
            if supported(m):
                m.__class__ = cls
                swapped += 1
    for m in model.modules():
        if type(m) is nn.Sequential:
            _fuse_relus(m)
    if swapped:
        library()
    return swapped


def _fuse_relus(sequence: nn.Sequential) -> None:
    names = list(sequence._modules)
    for before, name in zip(names, names[1:], strict=False):
        conv = sequence._modules[before]
        if type(conv) is NativeConv2d and not conv.relu and type(sequence._modules[name]) is nn.ReLU:
            conv.relu = True
            sequence._modules[name] = nn.Identity()
