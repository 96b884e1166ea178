"""Deterministic CPU training loop (SGD + MultiStepLR + mixup), evaluation and prediction.

Results do not depend on the number of threads: see ``microai.train.parallel``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from microai.train.config import TrainConfig
from microai.train.mixup import mix_batch, mixed_correct, mixed_cross_entropy
from microai.train.parallel import MIN_SHARD, ShardedStep, default_threads, inference, single_threaded_kernels
from microai.train.twin import native_twin


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
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients; restores the previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, threads: int | None) -> torch.Tensor:
    """On the model's native twin, whose logits are the same bits on every CPU (``microai.train.twin``)."""
    twin = native_twin(model)
    threads = default_threads() if threads is None else threads
    with eval_mode(twin.module):
        return inference(twin.module, twin.input(x), batch_size, threads)


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512, threads: int | None = None) -> np.ndarray:
    """Logits ``(N, num_classes)`` as float32, computed in eval mode.

    The same for any ``threads`` (default: torch's thread count) for a given ``batch_size``, and on any
    CPU (see ``microai.train.twin``).
    """
    xt, _ = as_tensors(x, None, "predict")
    return _logits(model, xt, batch_size, threads).numpy().astype(np.float32)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 512,
             threads: int | None = None) -> float:
    """Top-1 accuracy in [0, 1]."""
    xt, yt = as_tensors(x, y, "evaluate")
    return float((_logits(model, xt, batch_size, threads).argmax(dim=1) == yt).double().mean())


def _check_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    with eval_mode(model):  # the model itself: its output count does not need the twin's kernels
        outputs = model(x[:MIN_SHARD]).shape[1]
    if int(y.max()) >= outputs:
        raise TrainingError(f"{what}: label {int(y.max())} but the model has {outputs} outputs")


def _validation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threads: int) -> tuple[float, float]:
    logits = _logits(model, x, 512, threads)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(dim=1) == y).double().mean())


def train(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig, seed: int,
          x_val: np.ndarray | None = None, y_val: np.ndarray | None = None, progress: bool = True) -> dict:
    """Train ``model`` in place; return the per-epoch history (lists keyed by metric).

    Deterministic: ``seed`` seeds torch and the numpy generator that draws the batch order and the
    mixup pairs, so the same seed and data give identical weights, whatever ``cfg.num_threads``:
    each batch is split into ``cfg.shards`` shards computed with single-threaded kernels and summed
    in a fixed order (``microai.train.parallel``). A final batch of a single example is skipped
    (batch norm cannot train on it). History keys: ``epoch``, ``lr``, ``train_loss``,
    ``train_accuracy`` (mixup-weighted) and, with a validation set, ``val_loss``, ``val_accuracy``;
    no wall time, so that a run's metrics are the same bytes on every machine.
    """
    x, y = as_tensors(x_train, y_train, "training set")
    val = as_tensors(x_val, y_val, "validation set") if x_val is not None else None
    if (x_val is None) != (y_val is None):
        raise ValueError("x_val and y_val must be given together")
    _check_labels(model, x, y, "training set")
    if val is not None:
        _check_labels(model, *val, "validation set")
    threads = default_threads() if cfg.num_threads is None else cfg.num_threads
    with single_threaded_kernels():
        return _train(model, x, y, val, cfg, seed, threads, progress)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor] | None,
           cfg: TrainConfig, seed: int, threads: int, progress: bool) -> dict:
    keys = ("epoch", "lr", "train_loss", "train_accuracy")
    history: dict[str, list[float]] = {k: [] for k in keys}
    if val is not None:
        history.update(val_loss=[], val_accuracy=[])
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # foreach: one call per operation for all parameters, the same elementwise operations (same bits)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, foreach=True)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, cfg.milestones, cfg.gamma)
    starts = [s for s in range(0, len(x), cfg.batch_size) if len(x) - s > 1 or s == 0]
    model.train()
    with ShardedStep(model, cfg.shards, threads) as sharded:
        for epoch in range(1, cfg.epochs + 1):
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
                    targets, loss_fn = (ya, yb2), partial(mixed_cross_entropy, lam=lam)
                else:  # one cross entropy, not two weighted 1 and 0: the same bits, in fewer operations
                    ya, yb2, lam = yb, yb, 1.0
                    targets, loss_fn = (yb,), F.cross_entropy
                loss, logits = sharded.step(xb, targets, loss_fn)
                if not math.isfinite(loss.item()):
                    raise TrainingError(f"training diverged: loss {loss.item()} at epoch {epoch}, "
                                        f"batch {batch} (lr {lr}); lower the learning rate")
                optimizer.step()
                loss_sum += loss.item() * len(idx)
                correct += mixed_correct(logits, ya, yb2, lam)
                seen += len(idx)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False)
            scheduler.step()
            history["epoch"].append(epoch)
            history["lr"].append(lr)
            history["train_loss"].append(loss_sum / seen)
            history["train_accuracy"].append(correct / seen)
            if val is not None:
                val_loss, val_acc = _validation(model, *val, threads)
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_acc)
    return history
