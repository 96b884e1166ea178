"""Deterministic CPU training loop (SGD + MultiStepLR + mixup), evaluation and prediction."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from microai.train.config import TrainConfig
from microai.train.mixup import mix_batch, mixed_correct, mixed_cross_entropy


class TrainingError(RuntimeError):
    """Training cannot continue (diverged loss, labels the model cannot output...)."""


def as_tensors(x: np.ndarray, y: np.ndarray | None, what: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check a dataset (``x``: ``(N, *input_shape)`` floats, ``y``: ``(N,)`` labels) and convert it."""
    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{what}: x must have shape (N, *input_shape) with N > 0, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{what}: x must be numeric, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: x contains NaN or infinite values")
    if y is None:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), None
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{what}: y must be {len(x)} integer labels, got shape {y.shape} dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"{what}: negative label {int(y.min())}")
    return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            torch.from_numpy(y.astype(np.int64)))


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None`` keeps the current one)."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients; restores the previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    with eval_mode(model):
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits ``(N, num_classes)`` as float32, computed in eval mode."""
    xt, _ = as_tensors(x, None, "predict")
    return _logits(model, xt, batch_size).numpy().astype(np.float32)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1]."""
    xt, yt = as_tensors(x, y, "evaluate")
    return float((_logits(model, xt, batch_size).argmax(dim=1) == yt).double().mean())


def _check_labels(logits: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if int(y.max()) >= logits.shape[1]:
        raise TrainingError(f"{what}: label {int(y.max())} but the model has {logits.shape[1]} outputs")


def _validation(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    logits = _logits(model, x, 512)
    _check_labels(logits, y, "validation set")
    return float(F.cross_entropy(logits, y)), float((logits.argmax(dim=1) == y).double().mean())


def train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig, seed: int,
          x_val: np.ndarray | None = None, y_val: np.ndarray | None = None, progress: bool = True) -> dict:
    """Train ``model`` in place; return the per-epoch history (lists keyed by metric).

    Deterministic: ``seed`` seeds torch and the numpy generator that draws the batch order and the
    mixup pairs, so the same seed and data give identical weights. A final batch of a single example
    is skipped (batch norm cannot train on it). History keys: ``epoch``, ``lr``, ``train_loss``,
    ``train_accuracy`` (mixup-weighted), ``seconds`` and, with a validation set, ``val_loss``,
    ``val_accuracy``.
    """
    x, y = as_tensors(x_train, y_train, "training set")
    val = as_tensors(x_val, y_val, "validation set") if x_val is not None else None
    if (x_val is None) != (y_val is None):
        raise ValueError("x_val and y_val must be given together")
    keys = ("epoch", "lr", "train_loss", "train_accuracy", "seconds")
    history: dict[str, list[float]] = {k: [] for k in keys}
    if val is not None:
        history.update(val_loss=[], val_accuracy=[])
    with torch_threads(cfg.num_threads):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma)
        starts = [s for s in range(0, len(x), cfg.batch_size) if len(x) - s > 1 or s == 0]
        for epoch in range(1, cfg.epochs + 1):
            began = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            order = torch.from_numpy(rng.permutation(len(x)))
            loss_sum = correct = seen = 0.0
            bar = tqdm(starts, desc=f"epoch {epoch}/{cfg.epochs}", file=sys.stderr, disable=not progress,
                       leave=False, unit="batch")
            for batch, start in enumerate(bar):
                idx = order[start:start + cfg.batch_size]
                xb, yb = x[idx], y[idx]
                if cfg.mixup_alpha > 0:
                    xb, ya, yb2, lam = mix_batch(xb, yb, cfg.mixup_alpha, rng)
                else:
                    ya, yb2, lam = yb, yb, 1.0
                logits = model(xb)
                if epoch == 1 and batch == 0:
                    _check_labels(logits, y, "training set")
                loss = mixed_cross_entropy(logits, ya, yb2, lam)
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"training diverged: loss {loss.item()} at epoch {epoch}, "
                                        f"batch {batch} (lr {lr}); lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(idx)
                correct += mixed_correct(logits.detach(), ya, yb2, lam)
                seen += len(idx)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False)
            scheduler.step()
            history["epoch"].append(epoch)
            history["lr"].append(lr)
            history["train_loss"].append(loss_sum / seen)
            history["train_accuracy"].append(correct / seen)
            if val is not None:
                val_loss, val_acc = _validation(model, *val)
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_acc)
            history["seconds"].append(time.perf_counter() - began)
    return history
