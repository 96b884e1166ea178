"""QAT: fake quantization mirrors docs/arithmetic.md, so the exported IR reproduces the QAT model exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from microai.graph.ir import GraphError, QFormat
from microai.models import build_model
from microai.quant import reference
from microai.quant.formats import frac_bits_for, quantize_array
from microai.quant.qat import QATError, calibrate, export_qat, prepare_qat, train_qat
from microai.quant.qat_modules import fake_quantize, round_scaled
from microai.train import TrainConfig


def data(shape: tuple[int, ...], n: int = 96, seed: int = 0, scale: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, *shape)) * scale).astype(np.float32)


def trained_like(name: str, shape: tuple[int, ...], classes: int = 5, **options) -> nn.Module:
    """A model with non-trivial BatchNorm statistics (as after training) in eval mode."""
    torch.manual_seed(0)
    model = build_model(name, shape, classes, 8, **options)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(data(shape, 64, seed=9)))
    return model.eval()


def qat_outputs_and_reference(qat, shape, width, x):
    graph = export_qat(qat, shape, width)
    with torch.no_grad():
        qat.eval()
        expected = qat(torch.from_numpy(x)).double().numpy()
    out = reference.run(graph, x)
    return graph, expected, np.ldexp(out.astype(np.float64), -graph.node(graph.output).formats["output"].frac)


# ------------------------------------------------------------------ fake quantization == integer contract
@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-300, 300, allow_nan=False, width=32), min_size=1, max_size=20),
       frac=st.integers(-3, 12), width=st.sampled_from([4, 8, 16]),
       rounding=st.sampled_from(["trunc", "nearest"]))
def test_fake_quantize_equals_quantize_array(values, frac, width, rounding) -> None:
    x = np.array(values, dtype=np.float32)
    fmt = QFormat(width, frac)
    got = fake_quantize(torch.from_numpy(x), frac, width, rounding).double().numpy()
    assert np.array_equal(got, np.ldexp(quantize_array(x, fmt, rounding).astype(np.float64), -frac))


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=20),
       frac=st.integers(-140, 140), width=st.sampled_from([4, 8, 16]),
       rounding=st.sampled_from(["trunc", "nearest", "floor", "half_up"]))
def test_fake_quantize_gives_the_bits_of_its_definition(values, frac, width, rounding) -> None:
    """Skipping the saturation when max|x| cannot reach it, and dividing by 2**frac as a multiplication,
    change no bit (fracs beyond float32's exponents included)."""
    x = torch.tensor(values, dtype=torch.float32)
    limit = 1 << (width - 1)
    expected = round_scaled(x.clone().mul_(2.0 ** frac), rounding).clamp_(-limit, limit - 1).div_(2.0 ** frac)
    for max_abs in (None, float(x.abs().max())):
        got = fake_quantize(x, frac, width, rounding, max_abs=max_abs)
        assert np.array_equal(got.numpy().view(np.uint32), expected.numpy().view(np.uint32))


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_forward_is_the_quantized_values_with_a_straight_through_gradient(channels_last) -> None:
    x = torch.randn(4, 3, 5, 6) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = fake_quantize(x, 5, 8, "trunc")
    upstream = torch.randn_like(y)
    y.backward(upstream)
    assert torch.equal(y.detach(), fake_quantize(x.detach(), 5, 8, "trunc"))
    assert torch.equal(x.grad, upstream)  # gradient 1 through rounding and saturation


@settings(max_examples=40, deadline=None)
@given(acc=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20), n_acc=st.integers(0, 24),
       shift=st.integers(-6, 20), rounding=st.sampled_from(["floor", "nearest"]))
def test_output_fake_quantize_equals_requantization(acc, n_acc, shift, rounding) -> None:
    """floor/half_up of acc * 2**-n_acc at n_out = n_acc - shift is the C shift (saturated to 8 bits)."""
    a = np.array(acc, dtype=np.int64)
    n_out = n_acc - shift
    real = torch.from_numpy(np.ldexp(a.astype(np.float64), -n_acc))
    got = fake_quantize(real, n_out, 8, "floor" if rounding == "floor" else "half_up").numpy()
    ints = reference.shift_right(a, shift, rounding) if shift >= 0 else a << -shift
    expected = np.ldexp(np.clip(ints, -128, 127).astype(np.float64), -n_out)
    assert np.array_equal(got, expected)


# ------------------------------------------------------------------ exported IR == eval-mode QAT model
@pytest.mark.parametrize("name,shape,options", [
    ("resnetv1-6", (9, 64), {}),
    ("resnet", (3, 12, 12), {"batch_norm": True, "blocks": 2, "pools": [2, 1]}),
    ("cnn", (4, 20), {"batch_norm": True, "global_pool": True}),
    ("mlp", (4, 10), {}),
])
@pytest.mark.parametrize("width,rounding,quant_rounding,granularity", [  # int16 per-layer can overflow int32
    (8, "floor", None, "layer"), (12, "floor", None, "layer"), (8, "nearest", None, "layer"),
    (8, "floor", "nearest", "layer"), (8, "floor", None, "network"),
])
def test_export_reproduces_the_qat_model_exactly(name, shape, options, width, rounding, quant_rounding,
                                                 granularity) -> None:
    model = trained_like(name, shape, **options)
    qat = prepare_qat(model, width, granularity, rounding, quant_rounding)
    calibrate(qat, data(shape), seed=0)
    x = data(shape, 64, seed=1, scale=3.0)  # larger than calibration: saturation must match too
    graph, expected, got = qat_outputs_and_reference(qat, shape, width, x)
    assert graph.precision == f"int{width}" and graph.rounding == rounding
    assert graph.quant_rounding == quant_rounding or (quant_rounding is None and graph.quant_rounding == (
        "trunc" if rounding == "floor" else "nearest"))
    assert np.array_equal(got, expected)
    if granularity == "network":
        fracs = {f.frac for n in graph.nodes for f in n.formats.values()}
        assert len(fracs) == 1


class _ReluForms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = (nn.Conv1d(3, 3, 3, padding=1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a(x))
        x = self.b(x).relu()
        y = self.c(x)
        x = torch.relu(y) + y  # the layer's output is read by more than its ReLU
        return nn.functional.max_pool1d(self.d(x), 2)


def test_a_relu_that_alone_reads_a_layer_is_folded_into_it() -> None:
    """In its module, function and method spellings; the eval-mode model still equals its export."""
    model = _ReluForms().eval()
    qat = prepare_qat(model, 8)
    layers = [qat.network.get_submodule(f"qat_{name}") for name in "abcd"]
    assert [layer.relu for layer in layers] == [True, True, False, False]
    relus = [n for n in qat.network.graph.nodes if n.target in (F.relu, torch.relu, "relu")]
    assert len(relus) == 1
    calibrate(qat, data((3, 16)), seed=0)
    _, expected, got = qat_outputs_and_reference(qat, (3, 16), 8, data((3, 16), 16, seed=1, scale=3.0))
    assert np.array_equal(got, expected)


def test_formats_follow_the_paper_formula_and_freeze_in_eval() -> None:
    shape = (9, 32)
    qat = prepare_qat(trained_like("resnetv1-6", shape), 8)
    calibrate(qat, data(shape), seed=0)
    graph = export_qat(qat, shape, 8)
    stem = next(n for n in graph.nodes if n.op == "Conv1D")
    layer = qat.float_model.get_submodule("stem.0")
    assert stem.formats["kernel"].frac == frac_bits_for(float(layer.weight.detach().abs().max()), 8)
    assert stem.formats["bias"].frac == frac_bits_for(float(layer.bias.detach().abs().max()), 8)
    before = {k: v.clone() for k, v in qat.state_dict().items()}
    with torch.no_grad():
        qat(torch.from_numpy(data(shape, 16, scale=50.0)))  # eval mode: huge inputs change nothing
    assert all(torch.equal(before[k], v) for k, v in qat.state_dict().items())


def test_bias_right_shift_alignment_is_mirrored() -> None:
    """A tiny bias with a large input range makes n_b > n_x + n_w: align() shifts the bias right."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3))
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([1e-3, -7e-4, 3e-3, -2e-3]))
    qat = prepare_qat(model, 8, rounding="floor")
    x = data((2, 6), 64, scale=100.0)
    calibrate(qat, x, seed=0)
    graph, expected, got = qat_outputs_and_reference(qat, (2, 6), 8, x)
    conv = next(n for n in graph.nodes if n.op == "Conv1D")
    assert conv.formats["bias"].frac > graph.input.formats["output"].frac + conv.formats["kernel"].frac
    assert np.array_equal(got, expected)


class AveragingNet(nn.Module):
    """Average pooling in every spelling (module, functional, adaptive, mean), zero padding both ways,
    functional max pooling, a dead value and ``view(x.size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(3, 8, 5), nn.Conv1d(8, 8, 3)
        self.pad, self.avg, self.fc = nn.ZeroPad1d((1, 1)), nn.AvgPool1d(3, stride=2), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool1d(F.relu(self.conv1(F.pad(x, (2, 2)))), 2)
        _debug = y.sum()
        y = F.max_pool1d(self.avg(F.relu(self.conv2(self.pad(y)))), 1)
        z = y.mean(-1) + F.adaptive_avg_pool1d(y, 1).squeeze(-1)
        return self.fc(z.view(z.size(0), -1))


class AveragingNet2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(F.adaptive_avg_pool2d(F.relu(self.conv(x)), (4, 4)), 2)
        return self.fc(y.reshape(y.shape[0], -1))


@pytest.mark.parametrize(("model", "shape"), [(AveragingNet, (3, 24)), (AveragingNet2d, (3, 10, 10))])
@pytest.mark.parametrize(("width", "rounding"), [(8, "floor"), (8, "nearest"), (16, "floor"), (5, "nearest")])
def test_average_pooling_rounds_like_the_integer_division(model, shape, width, rounding) -> None:
    """QuantAverage reproduces div(sum, N) of docs/arithmetic.md: an unrounded average differs here."""
    torch.manual_seed(6)
    qat = prepare_qat(model().eval(), width, rounding=rounding)
    calibrate(qat, data(shape, 128), seed=0)
    graph, expected, got = qat_outputs_and_reference(qat, shape, width, data(shape, 64, seed=2))
    assert {"AvgPool1D", "AvgPool2D"} & {n.op for n in graph.nodes}
    assert np.array_equal(got, expected)


# ------------------------------------------------------------------ training
def test_qat_trains_through_average_pooling() -> None:
    shape = (3, 24)
    x = data(shape, 96, seed=7)
    y = (x[:, 0].mean(axis=1) > 0).astype(np.int64)
    torch.manual_seed(1)
    model = AveragingNet().eval()
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, milestones=[], gamma=0.5)
    qat, _ = train_qat(model, x, y, cfg, width=8, seed=0, progress=False)
    assert not torch.equal(qat.float_model.get_submodule("conv1").weight, model.conv1.weight)


def test_train_qat_is_deterministic_and_leaves_the_float_model_alone() -> None:
    shape = (3, 16)
    x = data(shape, 128, seed=4)
    y = (x[:, 0].mean(axis=1) > 0).astype(np.int64)
    model = trained_like("resnetv1-6", shape, classes=2)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.01, milestones=[1], gamma=0.5)
    runs = [train_qat(model, x, y, cfg, width=8, seed=5, progress=False) for _ in range(2)]
    (a, history), (b, _) = runs
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())
    assert not a.training and len(history["train_loss"]) == 2
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.float_model.get_submodule("stem.0").weight, original["stem.0.weight"])


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("model,match", [
    (nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2)), "Sigmoid"),
    (nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=1)), "Softmax"),
    (nn.Sequential(nn.ReLU(), nn.BatchNorm1d(2), nn.Flatten(), nn.Linear(8, 2)), "BatchNorm1d"),
])
def test_unsupported_operators_are_named(model: nn.Module, match: str) -> None:
    with pytest.raises(QATError, match=match):
        prepare_qat(model.eval(), 8)


def test_a_model_the_export_would_refuse_fails_before_training() -> None:
    class ChannelMean(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).mean(1)  # prepare_qat accepts it as an average; the IR has no such operator

    x = data((2, 8), 16)
    cfg = TrainConfig(epochs=50, batch_size=8, lr=0.01, milestones=[], gamma=0.5)
    with pytest.raises(GraphError, match="mean over dim=1"):
        train_qat(ChannelMean(), x, np.zeros(16, dtype=np.int64), cfg, width=8, seed=0, progress=False)


def test_bad_arguments() -> None:
    model = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="granularity"):
        prepare_qat(model, 8, granularity="channel")
    with pytest.raises(ValueError, match="quant_rounding"):
        prepare_qat(model, 8, quant_rounding="floor")
    with pytest.raises(ValueError, match="width 40"):
        prepare_qat(model, 40)
    qat = prepare_qat(model, 8)
    with pytest.raises(QATError, match="width 6 a model trained for width 8"):
        export_qat(qat, (4,), 6)
    with pytest.raises(QATError, match="train_qat/prepare_qat"):
        export_qat(model, (4,), 8)
