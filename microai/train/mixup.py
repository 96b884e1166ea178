"""mixup (Zhang et al., ICLR 2018): train on convex combinations of pairs of examples and of their labels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def mix_batch(x: torch.Tensor, y: torch.Tensor, alpha: float,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Return ``(lam * x + (1 - lam) * x[perm], y, y[perm], lam)`` with ``lam ~ Beta(alpha, alpha)``.

    ``rng`` draws both ``lam`` and the pairing, so a seeded generator makes the batch reproducible.
    """
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x)))
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam


def mixed_cross_entropy(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
                        lam: float) -> torch.Tensor:
    return lam * F.cross_entropy(logits, y_a) + (1.0 - lam) * F.cross_entropy(logits, y_b)


def mixed_correct(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> float:
    """Number of correct predictions, each pair counted with its mixing weight."""
    pred = logits.argmax(dim=1)
    return float(lam * (pred == y_a).sum().item() + (1.0 - lam) * (pred == y_b).sum().item())
