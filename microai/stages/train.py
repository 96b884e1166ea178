"""Stage train_float: one float model per dataset x model x filters x run (the run index is the seed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microai.config import section, write_json


def train_float(prepared_npz: Path, model: str, filters: int, run: int, params: dict[str, Any],
                out_ckpt: Path, out_metrics: Path, threads: int = 1) -> dict[str, Any]:
    """Train one float model (the run index is the seed); save checkpoint and metrics.

    ``threads`` sets the speed only: the checkpoint is the same bytes for any value.
    """
    import torch

    from microai.data import load_prepared
    from microai.models import build_model
    from microai.train import TrainConfig, evaluate, save_checkpoint, train

    data = load_prepared(Path(prepared_npz))
    dataset = Path(prepared_npz).stem
    cfg = TrainConfig.from_dict({**section(params, "train", dataset), "num_threads": threads})
    options = params.get("models", {}).get(model, {})
    torch.manual_seed(run)  # the initial weights too are drawn from the run's seed
    net = build_model(model, data.input_shape, data.num_classes, filters, **options)
    history = train(net, data.x_train, data.y_train, cfg, seed=run, x_val=data.x_test, y_val=data.y_test)
    metrics = {
        "dataset": dataset, "model": model, "filters": filters, "run": run,
        "test_accuracy": evaluate(net, data.x_test, data.y_test, threads=threads),
        "params": int(sum(p.numel() for p in net.parameters())),
        "history": history,
    }
    save_checkpoint(Path(out_ckpt), net, model, options, data.input_shape, data.num_classes, filters)
    write_json(out_metrics, metrics)
    return metrics
