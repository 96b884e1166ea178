"""Float training: configuration, deterministic SGD loop with mixup, evaluation, checkpoints."""

from microai.train.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from microai.train.config import TrainConfig
from microai.train.loop import TrainingError, evaluate, predict, train

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "TrainConfig",
    "TrainingError",
    "evaluate",
    "load_checkpoint",
    "predict",
    "read_checkpoint_info",
    "save_checkpoint",
    "train",
]
