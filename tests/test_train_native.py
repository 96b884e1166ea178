"""The native training kernels (microai.train.native): the functions of PyTorch's layers, the bits of
a shard whatever else is in the batch, and a clear error when they cannot be built."""

from __future__ import annotations

import copy
import ctypes
import math
import platform
import subprocess
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from microai.quant import qat_modules
from microai.quant.qat_modules import _quantize_torch_
from microai.train.native import (
    NativeConv2d,
    NativeKernelsUnavailable,
    NativeLinear,
    NativeMaxPool2d,
    shard_pass,
    use_native_kernels,
)
from microai.train.native import library as native_library
from microai.train.native import ops as native_ops
from microai.train.native.quantize import max_abs_slices, observe_quantize_, quantize_slices_


def _relative_error(a: torch.Tensor, reference: torch.Tensor) -> float:
    a, reference = a.detach().double(), reference.detach()
    return float((a - reference).abs().max() / reference.abs().max().clamp_min(1e-30))


@st.composite
def _convolutions(draw: st.DrawFn) -> tuple:
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    h, w = draw(st.integers(max(1, kh - 2 * ph), 9)), draw(st.integers(max(1, kw - 2 * pw), 9))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 20)), h, w, draw(st.integers(1, 35)), kh, kw, ph, pw,
            draw(st.booleans()))


def _error(a: torch.Tensor, reference: torch.Tensor, magnitude: torch.Tensor) -> float:
    """max|a - reference| against the largest sum of the magnitudes of the terms that made a value: what
    float32 rounding (Winograd's transforms included) is bounded by, where cancellation can make a value
    itself arbitrarily small."""
    return float((a.detach().double() - reference.detach()).abs().max() / magnitude.max().clamp_min(1e-30))


def _assert_convolution_is_pytorchs(n: int, c: int, h: int, w: int, co: int, kh: int, kw: int, ph: int,
                                    pw: int, bias: bool, seed: int) -> None:
    """The native layer's output and gradients against PyTorch's in float64."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the layer's initial weights
    conv = nn.Conv2d(c, co, (kh, kw), padding=(ph, pw), bias=bias)
    native = copy.deepcopy(conv)
    assert use_native_kernels(native) == 1 and type(native) is NativeConv2d
    x = torch.randn(n, c, h, w, generator=g)
    xs = [x.clone().requires_grad_(), x.double().requires_grad_()]
    y = native(xs[0])
    weight = conv.weight.detach().double().requires_grad_()
    bias_ref = None if conv.bias is None else conv.bias.detach().double().requires_grad_()
    reference = F.conv2d(xs[1], weight, bias_ref, padding=(ph, pw))
    dy = torch.randn(reference.shape, generator=g)
    y.backward(dy)
    reference.backward(dy.double())
    # the same sums over the magnitudes of the terms
    magnitudes = [t.detach().double().abs().requires_grad_() for t in (x, weight, bias_ref) if t is not None]
    F.conv2d(*magnitudes, padding=(ph, pw)).backward(dy.double().abs())
    x_sums, w_sums, *b_sums = magnitudes
    assert _error(y, reference, F.conv2d(*(m.detach() for m in magnitudes), padding=(ph, pw))) < 1e-5
    assert _error(xs[0].grad, xs[1].grad, x_sums.grad) < 1e-5
    assert _error(native.weight.grad, weight.grad, w_sums.grad) < 1e-5
    if bias:
        assert _error(native.bias.grad, bias_ref.grad, b_sums[0].grad) < 1e-5


@settings(max_examples=40, deadline=None)
@given(_convolutions(), st.integers(0, 2**31 - 1))
def test_convolution_and_its_gradients_are_pytorchs(case: tuple, seed: int) -> None:
    """Any channel counts (vector tails included), kernel sizes and paddings of at most kernel - 1."""
    _assert_convolution_is_pytorchs(*case, seed)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(8, 40), st.integers(1, 40), st.integers(0, 2), st.integers(0, 2),
       st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_3x3_convolutions_by_winograd_are_pytorchs(n: int, c: int, co: int, ph: int, pw: int, h: int, w: int,
                                                    seed: int) -> None:
    """3 x 3 kernels over 8 channels or more (Winograd's F(4 x 4, 3 x 3): forward and kernel gradient, and
    input gradient when the outputs are 8 or more): odd and even sizes, partial tiles, every padding,
    vector tails."""
    h, w = max(h, 3 - 2 * ph), max(w, 3 - 2 * pw)
    _assert_convolution_is_pytorchs(n, c, h, w, co, 3, 3, ph, pw, True, seed)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(16, 48), st.integers(1, 48), st.integers(0, 2), st.integers(1, 3),
       st.integers(1, 14), st.integers(0, 2**31 - 1))
def test_1x3_convolutions_by_winograd_are_pytorchs(n: int, c: int, co: int, pw: int, h: int, w: int,
                                                    seed: int) -> None:
    """1 x 3 kernels (1D layers) over 16 channels or more (Winograd's F(4, 3): forward and kernel gradient,
    and input gradient when the outputs are 16 or more): every width modulo the tile of 4, every padding,
    vector tails."""
    _assert_convolution_is_pytorchs(n, c, h, max(w, 3 - 2 * pw), co, 1, 3, 0, pw, True, seed)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 40), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4),
       st.integers(0, 3), st.integers(0, 2**31 - 1))
def test_max_pooling_and_its_gradient_are_pytorchs_bit_for_bit(n: int, c: int, kh: int, kw: int, oh: int,
                                                                extra: int, seed: int) -> None:
    """Ties (rounded values) go to the first maximum of the window; rows beyond the last window get
    no gradient."""
    x = (torch.randn(n, c, kh * oh + extra, kw * 3 + extra, generator=torch.Generator().manual_seed(seed))
         * 2).round()
    pool = NativeMaxPool2d((kh, kw))
    xs = [x.clone().requires_grad_() for _ in range(2)]
    y, reference = pool(xs[0]), F.max_pool2d(xs[1], (kh, kw))
    dy = torch.randn(y.shape)
    y.backward(dy)
    reference.backward(dy)
    assert torch.equal(y, reference)
    assert torch.equal(xs[0].grad, xs[1].grad)


def test_linear_is_pytorchs() -> None:
    linear = nn.Linear(37, 11)
    native = copy.deepcopy(linear)
    assert use_native_kernels(native) == 1 and type(native) is NativeLinear
    x = torch.randn(5, 37)
    xs = [x.clone().requires_grad_(), x.double().requires_grad_()]
    native(xs[0]).sum().backward()
    weight = linear.weight.detach().double().requires_grad_()
    bias = linear.bias.detach().double().requires_grad_()
    reference = F.linear(xs[1], weight, bias)
    reference.sum().backward()
    assert _relative_error(native(x), reference) < 1e-5
    assert _relative_error(native.weight.grad, weight.grad) < 1e-5
    assert _relative_error(native.bias.grad, bias.grad) < 1e-5
    assert _relative_error(xs[0].grad, xs[1].grad) < 1e-5


def _grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    for p in model.parameters():
        p.grad = None
    model(x).square().sum().backward()
    return [p.grad.clone() for p in model.parameters()]


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 10, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(10, 16, 3, padding=1),  # Winograd F(4 x 4, 3 x 3): all three
                          nn.MaxPool2d(2), nn.Conv2d(16, 9, (1, 3)),  # F(4, 3): forward, kernel grad
                          nn.Flatten(), nn.Linear(9 * 4 * 2, 5))
    assert use_native_kernels(model) == 5
    return model


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize(("kernel", "padding", "channels"),
                         [((1, 1), 0, 16), ((3, 3), 1, 16), ((1, 3), (0, 1), 16), ((3, 3), 1, 3)])
@pytest.mark.parametrize("input_grad", [True, False], ids=["input grad", "no input grad"])
def test_a_fused_relu_is_pytorchs_bit_for_bit(kernel: tuple, padding: int | tuple, channels: int,
                                              input_grad: bool) -> None:
    """A convolution with ``relu`` (direct, Winograd 3 x 3 and 1 x 3 kernels) gives torch.relu of its output
    and the gradients of the ReLU after it, bit for bit: -0.0 and NaN kept, negatives to +0; with and
    without an input gradient (a first layer)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(channels, 16, kernel, padding=padding)
    use_native_kernels(conv)
    with torch.no_grad():
        conv.weight[0] = -0.0  # with positive inputs and a -0.0 bias: a -0.0 output
        conv.bias[:3] = torch.tensor([-0.0, float("nan"), -1e30])
    fused = copy.deepcopy(conv)
    fused.relu = True
    x = torch.rand(2, channels, 5, 9) + 0.5
    dy = torch.randn(2, 16, 5, 9)
    outputs = []
    xs, xf = x.clone().requires_grad_(input_grad), x.clone().requires_grad_(input_grad)
    for y in (torch.relu(conv(xs)), fused(xf)):
        y.backward(dy)
        outputs.append(y)
    pairs = [outputs, (conv.weight.grad, fused.weight.grad), (conv.bias.grad, fused.bias.grad)]
    pairs += [(xs.grad, xf.grad)] if input_grad else []
    assert all(_same_bits(a, b) for a, b in pairs)
    y = outputs[0]
    assert y[:, 1].isnan().all() and (y[:, 2] == 0).all() and not torch.signbit(y[:, 2]).any()
    # (Winograd's sums start from +0: only the direct kernels, 1 x 1 or over 3 channels, have a -0.0 output)
    assert torch.signbit(y[:, 0]).any() == (kernel == (1, 1) or channels == 3)


def test_a_relu_after_a_convolution_in_a_sequential_runs_in_its_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """use_native_kernels fuses each ReLU that follows a native convolution in a Sequential (not one after a
    pooling, not a second ReLU): the same bits as the layers apart, forward and backward."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                          nn.ReLU(inplace=True), nn.Conv2d(16, 16, (1, 3), padding=(0, 1)), nn.ReLU(),
                          nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(16, 4, 1))
    fused, apart = copy.deepcopy(model), copy.deepcopy(model)
    use_native_kernels(fused)
    monkeypatch.setattr(native_ops, "_fuse_relus", lambda sequence: None)
    use_native_kernels(apart)
    assert [type(m).__name__ for m in fused] == ["NativeConv2d", "Identity", "NativeConv2d", "Identity",
                                                 "NativeConv2d", "Identity", "ReLU", "NativeMaxPool2d",
                                                 "ReLU", "NativeConv2d"]
    assert [m.relu for m in fused if isinstance(m, NativeConv2d)] == [True, True, True, False]
    x, dy = torch.randn(3, 3, 6, 8), torch.randn(3, 4, 3, 4)
    results = []
    for m in (fused, apart):
        xs = x.clone().requires_grad_()
        y = m(xs)
        y.backward(dy)
        results.append([y, xs.grad, *(p.grad for p in m.parameters())])
    assert all(_same_bits(a, b) for a, b in zip(*results, strict=True))


def test_an_examples_numbers_do_not_depend_on_the_rest_of_the_batch() -> None:
    model, x = _model(), torch.randn(7, 3, 8, 8)
    together = model(x)
    assert torch.equal(together, torch.cat([model(x[i:i + 1]) for i in range(len(x))]))


def test_a_shard_pass_gives_the_ordered_sum_of_the_shards_gradients() -> None:
    """What ShardedStep computes one shard at a time and sums in order, bit for bit."""
    model, x = _model(), torch.randn(9, 3, 8, 8)
    bounds = [(0, 4), (4, 5), (5, 9)]
    apart = [_grads(model, x[start:stop]) for start, stop in bounds]
    expected = [a.clone().add_(b).add_(c) for a, b, c in zip(*apart, strict=True)]
    with shard_pass(bounds) as current:
        together = _grads(model, x)
    assert current.per_shard
    assert all(torch.equal(a, b) for a, b in zip(together, expected, strict=True))


def test_a_layer_run_twice_in_a_shard_pass_is_reported() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1)
    use_native_kernels(conv)
    with shard_pass([(0, 1), (1, 2)]) as current:
        conv(conv(torch.randn(2, 4, 5, 5)))
    assert not current.per_shard


def test_a_layer_on_pytorchs_kernels_in_a_shard_pass_is_reported() -> None:
    linear = nn.Linear(4, 3)
    use_native_kernels(linear)
    with shard_pass([(0, 1), (1, 2)]) as current:
        linear(torch.randn(2, 5, 4))  # (N, T, features): PyTorch's, whose gradient sums over the batch
    assert not current.per_shard


@pytest.mark.parametrize("module", [
    nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 3, dilation=2), nn.Conv2d(4, 4, 3, groups=2),
    nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"), nn.Conv2d(4, 4, 3, padding="same"),
    nn.Conv2d(4, 4, 3, padding=3), nn.MaxPool2d(2, stride=1), nn.MaxPool2d(2, padding=1),
    nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(2, return_indices=True), nn.Conv1d(4, 4, 3),
])
def test_layers_outside_the_kernels_keep_pytorchs(module: nn.Module) -> None:
    kind = type(module)
    assert use_native_kernels(module) == 0 and type(module) is kind


def test_other_dtypes_run_pytorchs_kernels() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1).double()
    reference = copy.deepcopy(conv)
    use_native_kernels(conv)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    assert torch.equal(conv(x), reference(x))


def test_a_missing_compiler_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    monkeypatch.setenv("MICROAI_CACHE_DIR", str(tmp_path))
    native_library.library.cache_clear()
    try:
        with pytest.raises(NativeKernelsUnavailable, match="'no-such-cc' not found on PATH"):
            native_library.library()
    finally:
        native_library.library.cache_clear()


def test_a_failed_build_is_an_error_with_the_compilers_message(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path) -> None:
    source = tmp_path / "kernels.c"
    source.write_text("this is not C\n")
    monkeypatch.setattr(native_library, "SOURCES", (source, *native_library.SOURCES[1:]))
    monkeypatch.setenv("MICROAI_CACHE_DIR", str(tmp_path / "cache"))
    native_library.library.cache_clear()
    try:
        with pytest.raises(NativeKernelsUnavailable,
                           match=r"building .*kernels.c, .*pool.c with 'gcc' failed \(exit 1\)"):
            native_library.library()
        assert not any((tmp_path / "cache").iterdir())  # no half-written library left behind
    finally:
        native_library.library.cache_clear()


def test_an_unwritable_cache_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("MICROAI_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    native_library.library.cache_clear()
    try:
        with pytest.raises(NativeKernelsUnavailable,
                           match=r"training kernels to .*a-file/cache.*set MICROAI_CACHE_DIR"):
            native_library.library()
    finally:
        native_library.library.cache_clear()


def test_the_kernels_are_built_once_into_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("MICROAI_CACHE_DIR", str(tmp_path))
    native_library.library.cache_clear()
    try:
        native_library.library()
        built = list(tmp_path.iterdir())
        assert len(built) == 1 and built[0].name.startswith("kernels-") and built[0].suffix == ".so"
        mtime = built[0].stat().st_mtime_ns
        native_library.library.cache_clear()
        native_library.library()
        assert list(tmp_path.iterdir()) == built and built[0].stat().st_mtime_ns == mtime
    finally:
        native_library.library.cache_clear()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="compares x86 vector widths")
def test_an_avx2_build_gives_the_bits_of_this_machines_build(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path) -> None:
    """Each output is the same sequence of FMAs whatever the vector width: an x86-64-v3 (AVX2) build
    computes what the -march=native one (AVX-512 on the CI machines) does, bit for bit."""
    avx2 = tmp_path / "kernels-avx2.so"
    flags = [f for f in native_library.FLAGS if not f.startswith("-march")]
    subprocess.run(["gcc", *flags, "-march=x86-64-v3", "-o", str(avx2), *map(str, native_library.SOURCES)],
                   check=True)
    other = native_library.declared(ctypes.CDLL(str(avx2)))
    torch.manual_seed(0)
    model, x = _model(), torch.randn(5, 3, 8, 8)
    with shard_pass([(0, 2), (2, 5)]):
        expected = _grads(model, x)
    monkeypatch.setattr(native_ops, "library", lambda: other)
    with shard_pass([(0, 2), (2, 5)]):
        assert all(torch.equal(a, b) for a, b in zip(_grads(model, x), expected, strict=True))


_SPECIAL = [0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 1e-40, -1e-40, 3e38, -3e38, float("inf"), float("-inf"),
            float("nan")]


@st.composite
def _slices(draw: st.DrawFn) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """A batch (special values mixed with numbers of every magnitude) and its cut into slices."""
    n, row = draw(st.integers(1, 6)), draw(st.integers(1, 40))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, row, generator=g) * torch.exp2(torch.randint(-30, 30, (n, row), generator=g).float())
    for _ in range(draw(st.integers(0, 6))):
        x.view(-1)[draw(st.integers(0, n * row - 1))] = draw(st.sampled_from(_SPECIAL))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    edges = [0, *cuts, n]
    return x, list(zip(edges[:-1], edges[1:], strict=True))


@settings(max_examples=200, deadline=None)
@given(_slices(), st.data(), st.sampled_from(["trunc", "nearest", "floor", "half_up"]),
       st.sampled_from([2, 4, 8, 16, 32]))
def test_native_fake_quantization_gives_the_bits_of_pytorchs_operations(case: tuple, data: st.DataObject,
                                                                          rounding: str, width: int) -> None:
    """Each slice in its own format, saturated or not: +-0, subnormals, infinities, NaN and ties included."""
    x, bounds = case
    fracs = [data.draw(st.integers(-126, 126) | st.integers(-4, 12)) for _ in bounds]
    saturate = [data.draw(st.booleans()) for _ in bounds]
    native = quantize_slices_(x.clone(), bounds, fracs, saturate, width, rounding)
    expected = x.clone()
    for (start, stop), frac, clamp in zip(bounds, fracs, saturate, strict=True):
        _quantize_torch_(expected[start:stop], frac, width, rounding, clamp)
    assert torch.equal(native.view(torch.int32), expected.view(torch.int32))


@settings(max_examples=300, deadline=None)
@given(_slices(), st.data(), st.sampled_from(["trunc", "nearest", "floor", "half_up"]),
       st.sampled_from([2, 4, 8, 16]), st.booleans(), st.booleans())
def test_a_native_observing_quantizer_gives_the_bits_of_its_python_operations(
        case: tuple, data: st.DataObject, rounding: str, width: int, relu: bool, measured: bool) -> None:
    """Ranges (each slice's max|x| or a moving average of it), formats, saturation, rounding and ReLU in one
    call: +-0, subnormals, infinities and NaN included. A range the Python operations refuse (not finite) or
    a format beyond the kernel's is left to them, with the tensor untouched."""
    x, bounds = case
    bounds = tuple(bounds)
    previous = data.draw(st.none() | st.sampled_from([0.0, 1e-45, 1.0, float("inf")])
                         | st.floats(0, 2.0 ** 100, width=32))  # a range of float32 values
    momentum = data.draw(st.sampled_from([0.9, 0.0, 1.0]) | st.floats(0, 1))
    peaks = None if measured else native_ops.Peaks(bounds, tuple(max_abs_slices(x, bounds)))
    native = x.clone()
    given = None if peaks is None else peaks.values
    done = observe_quantize_(native, bounds, given, previous, momentum, width, rounding, relu)
    python = x.clone()
    with mock.patch.object(qat_modules, "observe_quantize_", lambda *args: None):
        try:
            expected = qat_modules._observe_slices_(python, bounds, peaks, previous, momentum, width,
                                                    rounding, relu)
        except ValueError:  # a range that is not finite
            expected = None
    if done is None:
        assert torch.equal(native.view(torch.int32), x.view(torch.int32))
        assert expected is None or any(abs(f) > 126 for f in expected[1])
    else:
        assert expected is not None and done[1] == expected[1]
        assert [str(r) for r in done[0]] == [str(float(r)) for r in expected[0]]
        assert torch.equal(native.view(torch.int32), python.view(torch.int32))


@settings(max_examples=100, deadline=None)
@given(_slices())
def test_native_max_abs_of_each_slice_is_pytorchs(case: tuple) -> None:
    x, bounds = case
    found = max_abs_slices(x, bounds)
    for m, (start, stop) in zip(found, bounds, strict=True):
        part = x[start:stop]
        assert math.isnan(m) if part.isnan().any() else m == float(part.abs().max())


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.sampled_from([(1, 1), (3, 3), (1, 3), (2, 5)]), st.integers(1, 40),
       st.integers(1, 35), st.booleans(), st.booleans(), st.data())
def test_a_convolutions_peaks_are_the_max_abs_of_each_shard_of_its_output(
        n: int, kernel: tuple, c: int, co: int, relu: bool, nan: bool, data: st.DataObject) -> None:
    """Direct and Winograd convolutions (over 8 / 16 channels), vector tails, fused ReLU, a NaN."""
    kh, kw = kernel
    h, w = data.draw(st.integers(kh, 6)), data.draw(st.integers(kw, 9))
    x = (torch.randn(n, c, h, w) * 10).contiguous(memory_format=torch.channels_last)
    if nan:
        x[data.draw(st.integers(0, n - 1)), 0, 0, 0] = float("nan")
    weight, bias = torch.randn(co, c, kh, kw), torch.randn(co)
    cut = data.draw(st.integers(1, n - 1))
    bounds = ((0, cut), (cut, n))
    peaks = native_ops.Peaks()
    y = native_ops._conv(x, weight, bias, kh // 2, kw // 2, bounds, relu=relu, peaks=peaks)
    assert peaks.bounds == bounds
    assert [str(m) for m in peaks.values] == [str(m) for m in max_abs_slices(y, bounds)]


def test_a_channels_last_batch_is_cut_into_examples() -> None:
    x = torch.randn(4, 3, 5, 6).contiguous(memory_format=torch.channels_last)
    x[2:] *= 100
    assert max_abs_slices(x, [(0, 2), (2, 4)]) == [float(x[:2].abs().max()), float(x[2:].abs().max())]
    q = quantize_slices_(x.clone(), [(0, 2), (2, 4)], [3, -2], [True, True], 8, "floor")
    assert torch.equal(q[:2], (x[:2] * 8).floor().clamp(-128, 127) / 8)
    assert torch.equal(q[2:], (x[2:] / 4).floor().clamp(-128, 127) * 4)


def _threaded_model() -> nn.Module:
    """Every native kernel, on a batch large enough that each call's work is shared between threads."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                          nn.MaxPool2d(2), nn.Conv2d(16, 16, (1, 3), padding=(0, 1)), nn.Conv2d(16, 8, 1),
                          nn.Flatten(), nn.Linear(8 * 16 * 16, 5))
    assert use_native_kernels(model) == 6
    return model


@pytest.mark.parametrize("bounds", [[(0, 9)], [(0, 4), (4, 5), (5, 9)], [(0, 5), (5, 9)]],
                         ids=["one shard", "three shards", "two shards"])
@pytest.mark.parametrize("threads", [2, 3])
def test_kernel_threads_give_the_bits_of_one_thread(bounds: list, threads: int) -> None:
    """The examples of a shard cut into pieces (fewer shards than threads) or whole shards side by side,
    kernel gradients summed in shard order: outputs, gradients and peaks are those of one thread."""
    model, x = _threaded_model(), torch.randn(9, 3, 32, 32)
    lib = native_library.library()

    def computed() -> tuple[torch.Tensor, list[torch.Tensor], tuple[float, ...]]:
        peaks = native_ops.Peaks()
        y = native_ops._conv(x.contiguous(memory_format=torch.channels_last) * 10, model[0].weight.detach(),
                             torch.randn(len(bounds), 16, generator=torch.Generator().manual_seed(1)), 1, 1,
                             tuple(bounds), relu=True, peaks=peaks)
        with shard_pass(bounds):
            return torch.cat([model(x).detach().flatten(), y.flatten()]), _grads(model, x), peaks.values

    alone = computed()
    before = lib.shared_runs()
    with native_library.kernel_threads(threads):
        assert lib.kernel_threads() == threads
        shared = computed()
    assert lib.kernel_threads() == 1 and lib.shared_runs() - before >= 12  # every call of the step
    assert _same_bits(shared[0], alone[0]) and shared[2] == alone[2]
    assert all(_same_bits(a, b) for a, b in zip(shared[1], alone[1], strict=True))


def test_kernel_threads_quantize_and_measure_each_slice_as_one_thread() -> None:
    x = torch.randn(6, 16, 40, 40) * 50
    x[4, 3, 2, 1] = float("nan")
    bounds, fracs, clamps = [(0, 1), (1, 4), (4, 6)], [3, -2, 5], [True, False, True]
    expected = (max_abs_slices(x, bounds), quantize_slices_(x.clone(), bounds, fracs, clamps, 8, "nearest"))
    before = native_library.library().shared_runs()
    with native_library.kernel_threads(2):
        found = (max_abs_slices(x, bounds), quantize_slices_(x.clone(), bounds, fracs, clamps, 8, "nearest"))
    assert native_library.library().shared_runs() - before == 2
    assert str(found[0]) == str(expected[0]) and _same_bits(found[1], expected[1])


def _conv_in_child(conn, x: torch.Tensor, weight: torch.Tensor) -> None:
    with native_library.kernel_threads(2):
        conn.send(native_ops._conv(x, weight, None, 1, 1, ((0, 3), (3, 6))).numpy())  # a tensor would go
        # through a shared-memory file the parent must open


def test_a_process_forked_after_kernel_threads_started_has_threads_of_its_own() -> None:
    """The helpers do not survive a fork (the training process forks its worker processes): the child
    starts without them and starts its own, instead of waiting for threads it does not have."""
    import multiprocessing

    x = torch.randn(6, 16, 24, 24).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(16, 16, 3, 3)
    with native_library.kernel_threads(2):
        expected = native_ops._conv(x, weight, None, 1, 1, ((0, 3), (3, 6)))
        context = multiprocessing.get_context("fork")
        ours, theirs = context.Pipe()
        child = context.Process(target=_conv_in_child, args=(theirs, x, weight))
        child.start()
        assert ours.poll(60), "the forked child hung"
        assert _same_bits(torch.from_numpy(ours.recv()), expected)
        child.join(10)
    assert child.exitcode == 0
