"""Float training: config parsing, learning, determinism, LR schedule, mixup, progress, failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from microai.models import build_model
from microai.train import TrainConfig, TrainingError, evaluate, predict, train
from microai.train.mixup import mix_batch, mixed_cross_entropy

PARAMS_SECTION = {"epochs": 20, "batch_size": 64, "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4,
                  "milestones": [10, 15, 18], "gamma": 0.13, "mixup_alpha": 0.2}


def blobs(n: int, seed: int, shape: tuple[int, ...] = (3, 16),
          classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Separable classes: each class adds its own fixed pattern to Gaussian noise."""
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(123).normal(size=(classes, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    x = rng.normal(scale=0.7, size=(n, *shape)).astype(np.float32) + patterns[y]
    return x, y


def small_cfg(**kw) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 32, "lr": 0.05, "milestones": [2], "gamma": 0.1, "mixup_alpha": 0.0}
    return TrainConfig.from_dict({**base, **kw})


# ------------------------------------------------------------------ config
def test_config_from_params_section() -> None:
    cfg = TrainConfig.from_dict(PARAMS_SECTION)
    assert (cfg.epochs, cfg.batch_size, cfg.milestones, cfg.gamma) == (20, 64, [10, 15, 18], 0.13)
    assert cfg.num_threads is None and isinstance(cfg.lr, float)


@pytest.mark.parametrize("change,match", [
    ({"learning_rate": 0.1}, "unknown training option.*learning_rate"),
    ({"lr": None}, "'lr' must be a number"),
    ({"weight_decay": "5e-4"}, "'weight_decay' must be a number"),  # PyYAML reads 5e-4 as a string
    ({"epochs": 0}, "'epochs' must be an int >= 1"),
    ({"batch_size": 8.0}, "'batch_size' must be an int"),
    ({"milestones": [15, 10]}, "strictly increasing"),
    ({"momentum": 1.0}, "'momentum' must be a number >= 0.0 and < 1.0"),
    ({"mixup_alpha": -1}, "'mixup_alpha'"),
    ({"num_threads": 0}, "'num_threads'"),
])
def test_config_rejects_bad_values_naming_the_key(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict({**PARAMS_SECTION, **change})


def test_config_missing_key() -> None:
    d = dict(PARAMS_SECTION)
    del d["gamma"]
    with pytest.raises(ValueError, match="missing training option.*gamma"):
        TrainConfig.from_dict(d)


# ------------------------------------------------------------------ training
def test_training_learns_and_reports_history() -> None:
    x, y = blobs(600, 0)
    xv, yv = blobs(200, 1)
    torch.manual_seed(0)
    model = build_model("resnetv1-6", (3, 16), 3, 8)
    before = evaluate(model, xv, yv)
    cfg = small_cfg(epochs=4, milestones=[2, 3], gamma=0.5, mixup_alpha=0.2)
    history = train(model, x, y, cfg, seed=0, x_val=xv, y_val=yv, progress=False)
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["lr"] == pytest.approx([0.05, 0.05, 0.025, 0.0125])
    assert len(history["val_accuracy"]) == 4 and len(history["train_loss"]) == 4
    assert history["train_loss"][-1] < history["train_loss"][0]
    after = evaluate(model, xv, yv)
    assert after > 0.9 > before
    assert history["val_accuracy"][-1] == pytest.approx(after)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name,options", [("resnet", {"batch_norm": True}), ("mlp", {})])
def test_same_seed_same_weights(name: str, options: dict) -> None:
    x, y = blobs(200, 2)
    cfg = small_cfg(epochs=2, mixup_alpha=0.4, batch_size=16)
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        model = build_model(name, (3, 16), 3, 8, **options)
        train(model, x, y, cfg, seed=seed, progress=False)
        runs.append(state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_seed_fixes_batch_order_and_mixup_independently_of_global_rng() -> None:
    x, y = blobs(120, 3)
    cfg = small_cfg(epochs=1, mixup_alpha=1.0)
    results = []
    for global_seed in (0, 1):
        torch.manual_seed(5)
        model = build_model("mlp", (3, 16), 3, 8)
        np.random.seed(global_seed)  # must not matter
        torch.manual_seed(global_seed)
        train(model, x, y, cfg, seed=11, progress=False)
        results.append(state(model))
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_progress_bar_goes_to_stderr_and_can_be_disabled(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = blobs(64, 4)
    train(build_model("mlp", (3, 16), 3, 4), x, y, small_cfg(epochs=2), seed=0, progress=True)
    out = capsys.readouterr()
    assert "epoch 2/2" in out.err and out.out == ""
    train(build_model("mlp", (3, 16), 3, 4), x, y, small_cfg(epochs=2), seed=0, progress=False)
    assert capsys.readouterr().err == ""


def test_num_threads_is_restored() -> None:
    x, y = blobs(64, 4)
    before = torch.get_num_threads()
    train(build_model("mlp", (3, 16), 3, 4), x, y, small_cfg(epochs=1, num_threads=1), seed=0, progress=False)
    assert torch.get_num_threads() == before


def test_predict_and_evaluate() -> None:
    x, y = blobs(50, 5)
    model = build_model("cnn", (3, 16), 3, 4)
    model.train()
    logits = predict(model, x, batch_size=7)
    assert logits.shape == (50, 3) and logits.dtype == np.float32
    assert model.training, "mode restored"
    assert evaluate(model, x, y, batch_size=7) == pytest.approx(float(np.mean(logits.argmax(1) == y)))


# ------------------------------------------------------------------ failures
def test_divergence_is_an_error() -> None:
    x, y = blobs(64, 6)
    with pytest.raises(TrainingError, match="diverged.*epoch 1"):
        train(build_model("mlp", (3, 16), 3, 4), x * 1e30, y, small_cfg(lr=1e30), seed=0, progress=False)


@pytest.mark.parametrize("mutate,match", [
    (lambda x, y: (x, y + 5), "label 7 but the model has 3 outputs"),
    (lambda x, y: (x, y[:-1]), "y must be 64 integer labels"),
    (lambda x, y: (x, y.astype(float)), "integer labels"),
    (lambda x, y: (np.where(x > 2, np.nan, x), y), "NaN"),
    (lambda x, y: (x[:0], y[:0]), "N > 0"),
])
def test_bad_training_data(mutate, match: str) -> None:
    x, y = mutate(*blobs(64, 7))
    with pytest.raises((ValueError, TrainingError), match=match):
        train(build_model("mlp", (3, 16), 3, 4), x, y, small_cfg(epochs=1), seed=0, progress=False)


# ------------------------------------------------------------------ mixup
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.05, 5.0), n=st.integers(2, 20))
def test_mixup_is_a_convex_combination(seed: int, alpha: float, n: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)
    xm, ya, yb, lam = mix_batch(x, y, alpha, np.random.default_rng(seed))
    assert 0.0 <= lam <= 1.0 and torch.equal(ya, y)
    assert sorted(yb.tolist()) == sorted(y.tolist())  # a permutation of the batch
    # each mixed row lies within the batch's range, and mixing with a permutation keeps the batch mean
    assert bool((xm >= x.min(0).values - 1e-6).all() and (xm <= x.max(0).values + 1e-6).all())
    assert torch.allclose(xm.mean(0), x.mean(0), atol=1e-5)
    logits = torch.randn(n, 3, generator=g)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(mixed_cross_entropy(logits, y, y, lam), ce(logits, y))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), scale=st.sampled_from([1.0, 30.0, 300.0]))
def test_without_mixup_one_cross_entropy_gives_the_bits_of_the_mixed_loss(seed: int, n: int,
                                                                          scale: float) -> None:
    """The training loop without mixup computes ``cross_entropy`` alone, not ``1 * ce + 0 * ce``: the same
    loss and gradient bits, signs of zeros included (large logits give softmax values of exactly 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    logits, y = torch.randn(n, 5, generator=g) * scale, torch.randint(0, 5, (n,), generator=g)
    results = []
    ce = torch.nn.functional.cross_entropy
    for loss_fn in (lambda z: mixed_cross_entropy(z, y, y, 1.0), lambda z: ce(z, y)):
        z = logits.clone().requires_grad_()
        loss = loss_fn(z) * 0.5
        loss.backward()
        results.append((loss.detach().view(torch.int32), z.grad.view(torch.int32)))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))
