"""1D models train lifted to 2D (microai.train.lift): the same function, or no lift at all."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from microai.models import build_model
from microai.quant.qat import calibrate, prepare_qat
from microai.train.lift import lift_to_2d, to_model_shape

SHAPE = (9, 32)


def _model(name: str = "resnetv1-6", **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, SHAPE, 5, 8, **options).train()


def _qat() -> nn.Module:
    qat = prepare_qat(_model(), 8)
    calibrate(qat, torch.randn(64, *SHAPE).numpy(), seed=0)
    return qat.train()


def _outputs_and_grads(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(x)
    F.cross_entropy(out, torch.arange(len(x)) % 5).backward()
    return out.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("build", [
    _model,
    lambda: _model("resnet", batch_norm=True, kernel_size=5),
    lambda: _model("cnn", batch_norm=True, global_pool=True),
    _qat,
], ids=["resnetv1-6", "resnet-bn", "cnn", "qat"])
def test_the_lifted_twin_computes_the_same_function(build) -> None:
    model = build()
    twin = lift_to_2d(model)
    assert twin is not None
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert [n for n, _ in twin.named_buffers()] == [n for n, _ in model.named_buffers()]
    x = torch.randn(6, *SHAPE)
    out, grads = _outputs_and_grads(model, x)
    twin_out, twin_grads = _outputs_and_grads(twin.to(memory_format=torch.channels_last),
                                              x.unsqueeze(2).contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(twin_out, out, rtol=1e-4, atol=1e-5)
    for g, t, p in zip(grads, twin_grads, model.parameters(), strict=True):
        torch.testing.assert_close(to_model_shape(t, p), g, rtol=1e-3, atol=1e-5)
    for b, t in zip(model.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(t, b)


def test_shared_modules_stay_shared() -> None:
    qat = _qat()  # the float model and the fake-quantized network share their layers
    assert len(list(lift_to_2d(qat).parameters())) == len(list(qat.parameters()))


def test_a_module_twice_in_one_parent_is_lifted_at_both_places() -> None:
    conv = nn.Conv1d(4, 4, 3, padding=1)
    lifted = lift_to_2d(nn.Sequential(conv, nn.ReLU(), conv))
    assert isinstance(lifted[0], nn.Conv2d) and lifted[2] is lifted[0]
    x = torch.randn(2, 4, 16)
    assert torch.allclose(lifted(x.unsqueeze(2)).squeeze(2), conv(torch.relu(conv(x))), atol=1e-6)


class _MeanOverLength(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(9, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=2))  # dimension 2 is the height once lifted


@pytest.mark.parametrize("model", [
    _MeanOverLength(),
    fx.symbolic_trace(_MeanOverLength()),  # a graph that calls mean(dim=2)
    nn.Sequential(nn.Conv1d(9, 4, 3), nn.Flatten(start_dim=2)),
    nn.Sequential(nn.Conv1d(9, 4, 3), nn.MaxPool1d(2, return_indices=True)),
    build_model("mlp", SHAPE, 5, 8),  # nothing to lift
    build_model("resnetv1-6", (3, 8, 8), 5, 8),  # already 2D
], ids=["custom-forward", "fx-mean", "flatten-from-2", "pool-indices", "mlp", "2d"])
def test_models_it_cannot_vouch_for_are_not_lifted(model: nn.Module) -> None:
    assert lift_to_2d(model) is None
