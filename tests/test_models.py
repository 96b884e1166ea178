"""Model zoo: the paper's ResNetv1-6 parameter/MAC formulas, configurability, fx-traceability, errors."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from microai.models import MODELS, build_model


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Conv/Dense multiply-accumulates of one inference, measured with forward hooks."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        else:
            per_output = module.in_channels // module.groups * int(torch.tensor(module.kernel_size).prod())
            total += output[0].numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("filters", [8, 16, 32, 80])
def test_resnetv1_6_uci_har_matches_the_paper(filters: int) -> None:
    model = build_model("resnetv1-6", (9, 128), 6, filters)
    assert param_count(model) == 13 * filters**2 + 39 * filters + 6
    assert count_macs(model, (9, 128)) == 1088 * filters**2 + 3462 * filters


def test_resnetv1_6_paper_figures() -> None:
    assert param_count(build_model("resnetv1-6", (9, 128), 6, 16)) == 3958
    assert count_macs(build_model("resnetv1-6", (9, 128), 6, 80), (9, 128)) == 7_240_160


@settings(max_examples=15, deadline=None)
@given(filters=st.integers(1, 48), channels=st.integers(1, 12), classes=st.integers(2, 50),
       two_d=st.booleans())
def test_resnetv1_6_parameter_formula(filters: int, channels: int, classes: int, two_d: bool) -> None:
    shape = (channels, 16, 12) if two_d else (channels, 40)
    model = build_model("resnetv1-6", shape, classes, filters)
    f, c, k = filters, channels, classes
    expected = 37 * f * f + (9 * c + 6 + k) * f + k if two_d else 13 * f * f + (3 * c + 6 + k) * f + k
    assert param_count(model) == expected
    assert model(torch.zeros(2, *shape)).shape == (2, classes)


def test_resnetv1_6_structure_is_the_papers() -> None:
    model = build_model("resnetv1-6", (9, 128), 6, 16)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules())
    block1, block2 = model.blocks
    assert [type(m) for m in block1.body] == [nn.Conv1d, nn.MaxPool1d, nn.ReLU, nn.Conv1d]
    assert [type(m) for m in block1.shortcut] == [nn.Conv1d, nn.MaxPool1d]
    assert block1.shortcut[0].kernel_size == (1,)
    assert block2.shortcut is None
    assert model.global_pool.kernel_size == 64


@pytest.mark.parametrize("name,shape,options", [
    ("resnetv1-6", (9, 128), {}),
    ("resnetv1-6", (3, 32, 32), {}),
    ("resnet", (9, 128), {"blocks": 3, "batch_norm": True, "pools": [2, 2, 1], "kernel_size": [5, 3, 3]}),
    ("resnet", (3, 32, 32), {"blocks": 2, "strides": [2, 1], "pools": 1, "block_filters": [8, 12]}),
    ("cnn", (13, 39), {"depth": 3, "batch_norm": True}),
    ("cnn", (3, 32, 32), {"global_pool": True}),
    ("mlp", (13, 39), {"depth": 1}),
])
def test_models_are_fx_traceable_and_equivalent(name: str, shape: tuple[int, ...], options: dict) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 7, 8, **options).eval()
    traced = torch.fx.symbolic_trace(model)
    x = torch.randn(3, *shape)
    with torch.no_grad():
        assert torch.equal(traced(x), model(x))
    assert model(x).shape == (3, 7)
    assert not any(n.op == "call_method" for n in traced.graph.nodes), "only modules and + are importable"


def test_configurable_resnet_downsamples_as_configured() -> None:
    model = build_model("resnet", (9, 128), 6, 8, blocks=3, pools=[2, 2, 2])
    assert model.global_pool.kernel_size == 16
    model = build_model("resnet", (3, 32, 32), 6, 8, blocks=2, strides=[2, 2], pools=1)
    assert model.global_pool.kernel_size == (8, 8)
    assert all(b.shortcut is not None for b in model.blocks)


def test_resnet_option_defaults_are_resnetv1_6() -> None:
    torch.manual_seed(1)
    a = build_model("resnet", (9, 128), 6, 12)
    torch.manual_seed(1)
    b = build_model("resnetv1-6", (9, 128), 6, 12)
    assert str(a) == str(b)
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)


def test_models_tuple() -> None:
    assert set(MODELS) == {"resnetv1-6", "resnet", "cnn", "mlp"}


@pytest.mark.parametrize("call,match", [
    (lambda: build_model("vgg", (9, 128), 6, 8), "unknown model 'vgg'"),
    (lambda: build_model("resnetv1-6", (9, 128), 6, 8, blocks=3), "unknown option.*blocks"),
    (lambda: build_model("cnn", (9, 128), 6, 8, layers=3), "unknown option.*layers"),
    (lambda: build_model("resnet", (9, 128), 6, 8, kernel_size=4), "odd"),
    (lambda: build_model("resnet", (9, 128), 6, 8, blocks=2, pools=[2, 2, 2]), "'pools'.*2 positive"),
    (lambda: build_model("resnet", (9, 4), 6, 8, blocks=3, pools=2), "block 2: pool size 2 larger"),
    (lambda: build_model("resnetv1-6", (128,), 6, 8), r"\(C, L\) or \(C, H, W\)"),
    (lambda: build_model("mlp", (9, 128), 6, 0), "filters must be a positive int"),
])
def test_bad_arguments_name_the_problem(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
