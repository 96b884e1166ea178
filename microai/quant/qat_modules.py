"""Fake-quantization modules of quantization-aware training, mirroring ``docs/arithmetic.md``.

A fake-quantized tensor holds real values that are exactly representable in its format
(``int * 2**-frac``), so a float convolution over fake-quantized operands computes the integer
accumulator up to the factor ``2**-(n_x + n_w)``. Rounding modes map to the integer contract:

* ``trunc`` / ``nearest`` (half away from zero): float -> fixed conversion (``quant_rounding``) of
  the network input, weights and biases;
* ``floor`` / ``half_up``: the graph's right shifts (``rounding`` ``floor`` / ``nearest``) of a
  bias alignment or an accumulator requantization. ``floor(y * 2**n_o)`` equals the integer
  ``acc >> (n_acc - n_o)``, and is exact (a no-op) when the shift is a left shift.

Training uses the straight-through estimator (gradient 1 through rounding and saturation). In eval
mode the layers compute in float64, where every int32 accumulator is exact, and return the
quantized values themselves, so the forward pass equals the integer reference executor.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from microai.graph.ir import QFormat
from microai.quant.formats import check_width, frac_bits_for
from microai.train.native import Peaks, current_pass, layer_forward
from microai.train.native.quantize import (
    ROUNDING_CODES,
    in_native_layout,
    max_abs_slices,
    observe_quantize_,
    quantize_slices_,
    whole,
)

ROUNDINGS = ("trunc", "nearest", "floor", "half_up")
#: graph ``rounding`` (right shifts) -> fake-quant rounding of the same operation
SHIFT_ROUNDING = {"floor": "floor", "nearest": "half_up"}
#: graph ``rounding`` -> the ``quant_rounding`` used with it (the paper: floor shifts, truncation)
DEFAULT_QUANT_ROUNDING = {"floor": "trunc", "nearest": "nearest"}


def round_scaled(s: torch.Tensor, rounding: str) -> torch.Tensor:
    """``s`` rounded to integers, in place.

    Truncation is ``floor(|s|)`` with the sign of ``s`` (the same bits, -0 included): torch's CPU
    ``trunc`` is not vectorized, about 15 times slower than ``floor``.
    """
    if rounding == "trunc":
        return torch.copysign(s.abs().floor_(), s, out=s)
    if rounding == "nearest":  # half away from zero
        return torch.copysign(s.abs().add_(0.5).floor_(), s, out=s)
    if rounding == "floor":
        return s.floor_()
    if rounding == "half_up":
        return s.add_(0.5).floor_()
    raise ValueError(f"rounding must be one of {ROUNDINGS}, got '{rounding}'")


#: largest |frac| whose 2**frac and 2**-frac are both float32 numbers (normal, so exact)
MAX_EXACT_FRAC = 126


def _may_saturate(max_abs: float, scale: float, width: int) -> bool:
    """Whether rounding ``x * scale`` for ``|x| <= max_abs`` can reach the signed ``width``-bit limits
    (rounding moves a value by less than 1)."""
    return not max_abs * scale <= (1 << (width - 1)) - 1


def _quantize_(t: torch.Tensor, frac: int, width: int, rounding: str, saturate: bool,
               max_abs: float | None = None) -> torch.Tensor:
    """``t = sat_w(round(t * 2**frac)) * 2**-frac``, in place: on the native kernel where it applies
    (float32, |frac| <= MAX_EXACT_FRAC), which does the float operations of :func:`_quantize_torch_`.

    ``max_abs`` (``max|t|``, when the caller knows it) skips the saturation when no value can reach it:
    rounding moves a value by less than 1.
    """
    clamp = saturate and (max_abs is None or _may_saturate(max_abs, 2.0 ** frac, width))
    return _quantize_slices_(t, whole(t), [frac], [clamp], width, rounding)


def _quantize_torch_(t: torch.Tensor, frac: int, width: int, rounding: str, clamp: bool) -> torch.Tensor:
    """:func:`_quantize_` by PyTorch's operations, saturated if ``clamp``. The division by ``2**frac`` is a
    multiplication by its exact inverse (the same correctly rounded result, in a faster kernel) where
    both are float32 numbers."""
    scale = 2.0 ** frac
    factor, inverse = _powers_of_two(frac) if abs(frac) <= MAX_EXACT_FRAC else (scale, None)
    round_scaled(t.mul_(factor), rounding)
    if clamp:
        limit = 1 << (width - 1)
        t.clamp_(-limit, limit - 1)
    return t.div_(scale) if inverse is None else t.mul_(inverse)


@functools.cache
def _powers_of_two(frac: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``2**frac`` and ``2**-frac`` as float32 scalars (``|frac| <= MAX_EXACT_FRAC``: both exact). An
    operation with a tensor scalar skips wrapping a Python number into a tensor: half the cost on a
    small tensor."""
    return torch.tensor(2.0 ** frac), torch.tensor(2.0 ** -frac)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``x`` as one dimension, a view when ``x`` is contiguous or channels last (a full reduction of a
    channels-last tensor in its own layout takes torch about 6 times longer)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(-1)
    return x.reshape(-1)


def _max_abs_slices(t: torch.Tensor, bounds: Sequence[tuple[int, int]],
                    peaks: Peaks | None = None) -> list[float]:
    """``max|t[start:stop]|`` of each slice (+0 for an empty slice or zeros): the ``peaks`` of ``t`` when they
    are of these slices, else on the native kernel where it applies, else by PyTorch's operations."""
    if peaks is not None and peaks.bounds == tuple(bounds):
        return list(peaks.values)
    if in_native_layout(t):
        return max_abs_slices(t, bounds)
    return [_max_abs(t[start:stop]) for start, stop in bounds]


def _max_abs(x: torch.Tensor) -> float:
    if not x.numel():
        return 0.0
    low, high = torch.aminmax(_flat(x))
    return abs(max(-float(low), float(high)))  # +0 for zeros (max(-0.0, 0.0) is -0.0)


def _quantize_slices_(t: torch.Tensor, bounds: Sequence[tuple[int, int]], fracs: Sequence[int],
                      clamps: Sequence[bool], width: int, rounding: str) -> torch.Tensor:
    """Each slice ``t[start:stop]`` quantized in place with its ``frac``, saturated where ``clamps`` says:
    in one native call where the kernel applies (float32, every |frac| <= MAX_EXACT_FRAC), else by
    :func:`_quantize_torch_` slice by slice (the same bits)."""
    if rounding in ROUNDING_CODES and in_native_layout(t) and all(abs(f) <= MAX_EXACT_FRAC for f in fracs):
        return quantize_slices_(t, bounds, fracs, clamps, width, rounding)
    for (start, stop), frac, clamp in zip(bounds, fracs, clamps, strict=True):
        _quantize_torch_(t[start:stop], frac, width, rounding, clamp)
    return t


def _averaged(previous: float, current: float, momentum: float) -> float:
    """The moving average of a range after a tensor of ``max|x|`` = ``current``."""
    return momentum * previous + (1.0 - momentum) * current


def _observe_slices_(t: torch.Tensor, bounds: Sequence[tuple[int, int]], peaks: Peaks | None,
                     previous: float | None, momentum: float, width: int, rounding: str,
                     relu: bool = False) -> tuple[list[float], tuple[int, ...]]:
    """Each slice ``t[start:stop]`` quantized in place in the format of its range, and rectified with
    ``relu``; returns (ranges, fracs). A slice's range is its ``max|x|`` (the ``peaks`` of these slices, if
    given), or with ``previous`` the moving average :func:`_averaged` of ``previous`` and it; it saturates
    where its ``max|x|`` can reach the limits. In one native call where it applies
    (:func:`observe_quantize_`), else by the same operations in Python (which also reject a range that is
    not finite)."""
    if rounding in ROUNDING_CODES and in_native_layout(t):
        given = peaks.values if peaks is not None and peaks.bounds == bounds else None
        done = observe_quantize_(t, bounds, given, previous, momentum, width, rounding, relu)
        if done is not None:
            return done
    found = _max_abs_slices(t, bounds, peaks)
    ranges = found if previous is None else [_averaged(previous, m, momentum) for m in found]
    fracs = tuple(frac_bits_for(r, width) for r in ranges)
    clamps = [_may_saturate(m, 2.0 ** f, width) for m, f in zip(found, fracs, strict=True)]
    _quantize_slices_(t, bounds, fracs, clamps, width, rounding)
    if relu:
        torch.relu_(t)
    return ranges, fracs


def fake_quantize(x: torch.Tensor, frac: int, width: int, rounding: str, saturate: bool = True,
                  in_place: bool = False, max_abs: float | None = None) -> torch.Tensor:
    """``sat_w(round(x * 2**frac)) * 2**-frac`` in a new tensor (``in_place``: in ``x``); straight-through
    gradient when ``x`` requires grad.

    The result is ``x.clone()`` (whose gradient is the identity) quantized in place through a
    detached alias: its values are exactly the quantized ones in training too (no
    ``x + (q - x).detach()``, whose float32 sum could round), and the backward pass has no Python
    autograd node (which costs more than the quantization of a small tensor). ``in_place`` skips the
    clone, for an intermediate result that nothing else reads and whose autograd node did not save
    it (a convolution's or an addition's output): ``x`` itself passes the gradient through.
    ``max_abs``: ``max|x|`` if known (see :func:`_quantize_`).
    """
    y = x if in_place else x.clone()
    _quantize_(y.detach(), frac, width, rounding, saturate, max_abs)
    return y


class FakeQuantizer(nn.Module):
    """Fake-quantizes one tensor to the paper's power-of-two format ``frac_bits_for(range)``.

    In training mode every forward re-estimates the range: ``observe="exact"`` takes ``max|x|`` of
    the tensor (weights, biases), ``observe="ema"`` an exponential moving average of the batch
    ``max|x|`` (activations; the first batch initialises it). In eval mode the format is frozen.
    With ``group_ranges`` (per-network granularity) all members share the format of the largest
    range in the group; ``slot`` is this quantizer's entry. ``in_place``: its input is an intermediate
    result only it reads (see :func:`fake_quantize`), quantized without a copy.
    """

    lifts_to_2d = True  # microai.train.lift: elementwise, and max|x| over the whole tensor

    def __init__(self, width: int, rounding: str, observe: str, momentum: float = 0.9,
                 group_ranges: torch.Tensor | None = None, slot: int = 0, in_place: bool = False) -> None:
        super().__init__()
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got '{rounding}'")
        if observe not in ("exact", "ema"):
            raise ValueError(f"observe must be 'exact' or 'ema', got '{observe}'")
        self.width = check_width(width)
        self.rounding = rounding
        self.observe = observe
        self.momentum = momentum
        self.slot = slot
        self.in_place = in_place
        self.register_buffer("range", torch.zeros((), dtype=torch.float64))
        self.register_buffer("observed", torch.zeros((), dtype=torch.bool))
        self.register_buffer("frac", torch.tensor(self.width - 1, dtype=torch.int64))
        self.group_ranges: torch.Tensor | None
        if group_ranges is not None:
            self.register_buffer("group_ranges", group_ranges)
        else:
            self.group_ranges = None

    @property
    def format(self) -> QFormat:
        return QFormat(self.width, int(self.frac))

    @staticmethod
    def max_abs(x: torch.Tensor, peaks: Peaks | None = None) -> float:
        """``max|x|`` (0 for an empty tensor), in one pass (none with the ``peaks`` of ``x``)."""
        return _max_abs_slices(x.detach(), whole(x), peaks)[0]

    def observe_max(self, current: float) -> int:
        """Fold ``current`` (a tensor's ``max|x|``) into the range and recompute the format; return its
        fractional bits."""
        first = not self._buffers["observed"].item()  # the hot path of QAT training: not through __getattr__
        previous = self._averaged_with(first)
        return self._keep_range(current if previous is None else _averaged(previous, current, self.momentum),
                                first)

    def _averaged_with(self, first: bool) -> float | None:
        """The range a new ``max|x|`` is averaged with (``first``: the quantizer has observed nothing); None
        where it takes the new one as it is (exact, or nothing observed yet)."""
        return None if first or self.observe == "exact" else self._buffers["range"].item()

    def _keep_range(self, value: float, first: bool) -> int:
        """Store the range ``value`` (``first``: the quantizer had observed nothing); return its format's
        fractional bits."""
        buffers = self._buffers
        buffers["range"].fill_(value)
        if first:  # a write costs more than the read
            buffers["observed"].fill_(True)
        return self._set_format(value)

    def merge_shard_buffers(self, shards: list[dict[str, torch.Tensor]]) -> None:
        """After a sharded training step (``microai.train.parallel``): the largest range of the shards.

        Each shard folded its own ``max|x|`` into the moving average, so the largest result is the
        average updated with the whole batch's ``max|x|``.
        """
        buffers = self._buffers  # as in observe_max
        value = max(s["range"].item() for s in shards)
        buffers["range"].fill_(value)
        if not buffers["observed"].item():  # else every shard, which started from it, is observed too
            buffers["observed"].fill_(any(s["observed"].item() for s in shards))
        self._set_format(value)

    def refresh(self) -> None:
        """Recompute ``frac`` from the range (or the group's largest range)."""
        self._set_format(float(self.range))

    def _set_format(self, value: float) -> int:
        """``frac`` for a range of ``value`` (per network: the group's largest range)."""
        buffers = self._buffers
        group = buffers.get("group_ranges")
        if group is not None:
            group[self.slot] = value
            value = float(group.max())
        frac = frac_bits_for(value, self.width)
        if buffers["frac"].item() != frac:  # a read costs less than a write
            buffers["frac"].fill_(frac)
        return frac

    @property
    def per_shard(self) -> bool:
        """microai.train.shard: in a shard pass it formats each shard's slice as the shard alone would
        (not per network: the group's shared range would follow the order of the shards)."""
        return self.group_ranges is None

    def forward(self, x: torch.Tensor, peaks: Peaks | None = None, relu: bool = False) -> torch.Tensor:
        """``peaks``: ``max|x|`` per shard, as the native layer that computed ``x`` measured it (see
        ``microai.train.native.Peaks``), if it did. ``relu``: that layer takes the gradient of a ReLU after
        this quantizer from ``x`` as it will be (``Peaks.relu_after``): the quantizer rectifies ``x`` too,
        in place (an ``in_place`` quantizer only)."""
        if relu and not self.in_place:
            raise ValueError("only an in_place quantizer rectifies its input")
        y = x if self.in_place else x.clone()
        # written through an alias autograd does not follow: y's gradient is the identity (straight through);
        # with relu, the layer saved y for the ReLU's gradient, which must read the values written here
        values = y.data if relu else y.detach()
        if not self.training:
            _quantize_(values, int(self.frac), self.width, self.rounding, True)
        elif self.per_shard:
            self._observe_slices(values, peaks, relu)
            return y
        else:
            current = self.max_abs(values, peaks)
            _quantize_(values, self.observe_max(current), self.width, self.rounding, True, current)
        if relu:
            torch.relu_(values)
        return y

    def _observe_slices(self, values: torch.Tensor, peaks: Peaks | None, relu: bool) -> None:
        """Training, per layer: each shard's slice of ``values`` (the whole tensor outside a shard pass)
        quantized in place in the format its own ``max|x|`` gives, as that shard would be alone, and
        rectified with ``relu``; the quantizer keeps the largest of the shards' ranges, as
        :meth:`merge_shard_buffers` would, and records the shards' formats in the pass for the layers that
        read them."""
        buffers = self._buffers
        shards = current_pass()
        first = not buffers["observed"].item()
        ranges, fracs = _observe_slices_(values, whole(values) if shards is None else shards.bounds, peaks,
                                         self._averaged_with(first), self.momentum, self.width, self.rounding,
                                         relu)
        self._keep_range(max(ranges), first)
        if shards is not None:
            shards.formats[id(buffers["frac"])] = fracs

    def extra_repr(self) -> str:
        return f"width={self.width}, rounding={self.rounding}, observe={self.observe}, frac={int(self.frac)}"


class QuantLayer(nn.Module):
    """A Conv1d/Conv2d/Linear with fake-quantized kernel, bias and output, and with ``relu`` the ReLU after
    its output's quantizer (``prepare_qat`` folds it in when nothing else reads the quantized output).

    ``forward(x, input_frac)``: ``x`` is already fake-quantized in the format with ``input_frac``
    fractional bits (the producer's quantizer); it fixes the accumulator format
    ``n_acc = input_frac + kernel frac`` the bias is aligned to.

    Why fold the ReLU: on a native layer, the output quantizer rectifies as it writes its values and the
    layer's backward pass takes the ReLU's gradient, instead of a module, an operation and an autograd
    node more (the ReLU of the integer graph is folded into its layer too).
    """

    lifts_to_2d = True  # microai.train.lift: ``layer`` may be a lifted Conv1d (any conv runs _conv_forward)

    def __init__(self, layer: nn.Module, kernel: FakeQuantizer, bias: FakeQuantizer, output: FakeQuantizer,
                 shift_rounding: str) -> None:
        super().__init__()
        if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            raise TypeError(f"QuantLayer wraps Conv1d, Conv2d or Linear, not {type(layer).__name__}")
        self.layer = layer
        self.kernel_q = kernel
        self.bias_q = bias
        self.output_q = output
        self.shift_rounding = shift_rounding
        #: set by prepare_qat, which folds in the ReLU that alone reads the quantized output
        self.relu = False
        # Kernel and bias fake-quantized once per sharded training step (prepare_step), for the shards
        # to read instead of quantizing them again (derived values: not saved).
        self.register_buffer("kernel_values", torch.zeros_like(layer.weight), persistent=False)
        self.register_buffer("bias_values", torch.zeros(layer.weight.shape[0]), persistent=False)
        #: set on the replicas of a sharded step (microai.train.parallel): compute with the prepared
        #: values, which the step writes into the replica's own kernel and bias
        self.prepared_step = False

    def _bias(self) -> torch.Tensor:
        b = self.layer.bias
        return b if b is not None else self.layer.weight.new_zeros(self.layer.weight.shape[0])

    @property
    def quantizes_once_per_step(self) -> bool:
        """Whether :class:`StepValues` applies: per layer, the kernel's and bias's formats depend on
        them alone (per network, on the shared range the activations of the shard update too)."""
        return self.kernel_q.group_ranges is None

    @property
    def per_shard(self) -> bool:
        """microai.train.shard: in a shard pass it computes each shard as the shard alone would (a
        replica's layer with prepared kernel and bias, its quantizers per layer)."""
        return self.prepared_step and self.quantizes_once_per_step

    @staticmethod
    def merge_shard_buffers(shards: list[dict[str, torch.Tensor]]) -> None:
        """The prepared values are the same in every shard (the shards only read them)."""

    def forward(self, x: torch.Tensor, input_frac: torch.Tensor) -> torch.Tensor:
        # the hot path of QAT training: submodules, parameters and buffers read from their dicts
        # (Module.__getattr__ costs more than a small tensor's arithmetic)
        modules = self._modules
        layer = modules["layer"]
        weight, bias = layer._parameters["weight"], layer._parameters.get("bias")
        if self.training and self.prepared_step:
            # a replica of a sharded step: its kernel and bias hold the prepared values (microai.train.
            # parallel writes them in, see QATModel.prepared_parameters); their gradients are the
            # straight-through ones
            w, b, fresh = weight, bias if bias is not None else self._buffers["bias_values"], False
        else:  # in training mode the quantizers re-estimate their formats
            bias = self._bias()
            if not self.training:  # float64: every int32 accumulator of docs/arithmetic.md is exact
                x, weight, bias = x.double(), weight.double(), bias.double()
            w, b, fresh = modules["kernel_q"](weight), modules["bias_q"](bias), True
        kernel_frac = int(modules["kernel_q"]._buffers["frac"])
        bias_frac = int(modules["bias_q"]._buffers["frac"])
        # in a shard pass, each shard's input has its own format (FakeQuantizer._forward_shards)
        shards = current_pass() if self.training else None
        input_fracs = None if shards is None else shards.formats.get(id(input_frac))
        if input_fracs is None:
            input_fracs = (int(input_frac),)
        n_accs = {f + kernel_frac for f in input_fracs}
        shard_bias = None
        if len(n_accs) == 1:
            b = self._aligned(b, bias_frac, n_accs.pop(), in_place=fresh)
        else:  # each shard's bias aligned to its accumulator, the gradient to b (straight through)
            with torch.no_grad():
                shard_bias = torch.stack([self._aligned(b, bias_frac, f + kernel_frac) for f in input_fracs])
        peaks = Peaks(relu_after=self.relu)
        y = layer_forward(layer, x, w, b, shard_bias, peaks)
        y = modules["output_q"](y, peaks, relu=peaks.relu_taken)
        if self.relu and not peaks.relu_taken:  # PyTorch's layer
            y = torch.relu(y)
        return y if y.dtype == torch.float32 else y.float()

    def _aligned(self, b: torch.Tensor, bias_frac: int, n_acc: int, in_place: bool = False) -> torch.Tensor:
        """``b`` (``bias_frac`` fractional bits) aligned to an accumulator of ``n_acc``: a right shift when
        ``bias_frac > n_acc``, else ``b`` itself (a left shift is exact)."""
        if bias_frac <= n_acc:
            return b
        return fake_quantize(b, n_acc, 32, self.shift_rounding, saturate=False, in_place=in_place)


class StepValues:
    """The kernels and biases of ``layers`` fake-quantized once per sharded training step, into the
    ``kernel_values`` and ``bias_values`` every shard reads (``QATModel.prepare_step``, before the shards;
    their quantizers update their ranges and formats as in a forward pass).

    Why not tensor by tensor: for a few dozen small tensors, the cost is per call. The tensors are
    copied into the slices of one flat tensor (grouped by width and rounding), measured and quantized
    there like a batch's shards (the operations of :func:`_quantize_`), and copied out.
    """

    def __init__(self, layers: list[QuantLayer]) -> None:
        pairs = [(layer, name) for layer in layers for name in ("kernel", "bias")]
        quantizers = [layer._modules[f"{name}_q"] for layer, name in pairs]
        if any(q.observe != "exact" or q.group_ranges is not None for q in quantizers):
            raise ValueError("StepValues takes the exact quantizers of per-layer formats")
        key = [(q.width, q.rounding) for q in quantizers]
        order = sorted(range(len(pairs)), key=key.__getitem__)
        pairs = [pairs[i] for i in order]
        self.quantizers: list[FakeQuantizer] = [quantizers[i] for i in order]
        #: where each value buffer, and the parameter it is computed from, are found (module dicts, which a
        #: conversion of the model updates; no bias: zeros)
        self.values_at = [(layer._buffers, f"{name}_values") for layer, name in pairs]
        self.sources_at = [(layer.layer._parameters, "weight", None) if name == "kernel"
                           else (layer.layer._parameters, "bias", torch.zeros(layer.layer.weight.shape[0]))
                           for layer, name in pairs]
        #: (width, rounding, first, stop) of each run of quantizers that share both
        self.groups = []
        first = 0
        for (width, rounding), run in itertools.groupby(key[i] for i in order):
            stop = first + len(list(run))
            self.groups.append((width, rounding, first, stop))
            first = stop
        #: the dtypes and shapes of the values, the flat tensor, its slices shaped like them, and their
        #: bounds (made at the first update)
        self._flat: tuple[list, torch.Tensor, list[torch.Tensor], list[tuple[int, int]]] | None = None

    def update(self) -> None:
        values = [buffers[name] for buffers, name in self.values_at]
        sources = [zero if (p := params[name]) is None else p for params, name, zero in self.sources_at]
        flat, parts, bounds = self._flat_like(values)
        with torch.no_grad():
            torch._foreach_copy_(parts, sources)
            ranges, fracs = [], []
            for width, rounding, first, stop in self.groups:
                found, formats = _observe_slices_(flat, bounds[first:stop], None, None, 0.0, width, rounding)
                ranges += found
                fracs += formats
            torch._foreach_copy_(values, parts)
            self._keep_formats(ranges, fracs)

    def _flat_like(self, values: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor],
                                                              list[tuple[int, int]]]:
        """The flat tensor for ``values`` (made again when their dtypes or shapes change)."""
        kinds = [(v.dtype, v.shape) for v in values]
        if self._flat is None or self._flat[0] != kinds:
            sizes = [v.numel() for v in values]
            flat = values[0].new_empty(sum(sizes))
            parts = [part.view_as(v) for part, v in zip(flat.split(sizes), values, strict=True)]
            edges = list(itertools.accumulate(sizes, initial=0))
            self._flat = kinds, flat, parts, list(zip(edges[:-1], edges[1:], strict=True))
        return self._flat[1:]

    def _keep_formats(self, ranges: list[float], fracs: list[int]) -> None:
        """What :meth:`FakeQuantizer.observe_max` writes, in a few calls: every range (they move at every
        step), the formats and observed flags that changed (a read costs less than a write)."""
        buffers = [q._buffers for q in self.quantizers]
        kept = [b["range"] for b in buffers]
        torch._foreach_zero_(kept)
        torch._foreach_add_(kept, ranges)
        for b, frac in zip(buffers, fracs, strict=True):
            if b["frac"].item() != frac:
                b["frac"].fill_(frac)
            if not b["observed"].item():
                b["observed"].fill_(True)


class QuantAverage(nn.Module):
    """An average pooling rounded like the integer AvgPool of ``docs/arithmetic.md``.

    ``forward(x, input_frac, *args, **kwargs)`` runs ``pool(x, *args, **kwargs)`` (an average pooling
    module, or ``torch.Tensor.mean`` with its dims) and replaces its result by ``div(sum, count)`` in the
    input's format: the window sum truncated towards zero after division (graph rounding ``nearest``:
    half away from zero). The sum is recomputed in float64 from the integers, where it is exact.
    ``count`` is the window size; ``None`` for adaptive or global pooling, whose windows tile the input.
    """

    def __init__(self, pool: nn.Module | Callable[..., torch.Tensor], count: int | None,
                 rounding: str) -> None:
        super().__init__()
        if rounding not in SHIFT_ROUNDING:
            raise ValueError(f"rounding must be one of {tuple(SHIFT_ROUNDING)}, got '{rounding}'")
        self.pool = pool
        self.count = count
        self.rounding = rounding

    def forward(self, x: torch.Tensor, input_frac: torch.Tensor, *args: object,
                **kwargs: object) -> torch.Tensor:
        y = self.pool(x, *args, **kwargs)
        count = self.count or math.prod(x.shape[2:]) // math.prod(y.shape[2:])
        scale = 2.0 ** int(input_frac)
        total = torch.round(self.pool(x.detach().double() * scale, *args, **kwargs) * count)
        if self.rounding == "nearest":
            total = total + torch.sign(total) * (count // 2)
        q = (torch.trunc(total / count) / scale).to(y.dtype)
        if not torch.is_grad_enabled() or not y.requires_grad:
            return q
        return y + (q - y).detach()

    @property
    def lifts_to_2d(self) -> bool:
        """microai.train.lift: with a pooling module (lifted with it), not ``Tensor.mean`` over named dims."""
        return isinstance(self.pool, nn.Module)

    def extra_repr(self) -> str:
        return f"count={self.count}, rounding={self.rounding}"
