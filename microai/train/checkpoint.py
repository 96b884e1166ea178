"""Model checkpoints: the state dict plus what ``build_model`` needs to rebuild the network."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from microai.data.atomic import atomic_output
from microai.models import build_model

CHECKPOINT_FORMAT = "microai-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be written, read or rebuilt; the message names the file."""


@dataclass(frozen=True)
class CheckpointInfo:
    """The ``build_model`` arguments stored with the weights."""

    model_name: str
    model_options: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    filters: int


def save_checkpoint(path: Path, model: nn.Module, model_name: str, model_options: dict[str, Any],
                    input_shape: tuple[int, ...], num_classes: int, filters: int) -> None:
    """Write atomically (temporary file in the same folder, then rename).

    The same model gives the same bytes wherever it is saved: ``torch.save`` names the archive's
    inner folder after the file it writes to, so it writes to memory (inner name ``archive``) and
    the bytes are then moved into place.
    """
    path = Path(path)
    info = CheckpointInfo(model_name, dict(model_options), tuple(int(s) for s in input_shape),
                          int(num_classes), int(filters))
    try:
        json.dumps(info.model_options)
    except TypeError as e:
        raise CheckpointError(f"{path}: model_options must be JSON-like (YAML values): {e}") from e
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "info": {**asdict(info), "input_shape": list(info.input_shape)},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _read(path: Path) -> tuple[CheckpointInfo, dict[str, torch.Tensor]]:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: checkpoint not found") from e
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a MicroAI checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')}, expected {CHECKPOINT_VERSION}")
    try:
        d = payload["info"]
        info = CheckpointInfo(str(d["model_name"]), dict(d["model_options"]),
                              tuple(int(s) for s in d["input_shape"]), int(d["num_classes"]),
                              int(d["filters"]))
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: malformed checkpoint metadata: {e!r}") from e
    return info, state


def read_checkpoint_info(path: Path) -> CheckpointInfo:
    """The model name, options, input shape, classes and filters stored in a checkpoint."""
    return _read(path)[0]


def load_checkpoint(path: Path) -> nn.Module:
    """Rebuild the model with ``build_model`` and load its weights (eval mode)."""
    info, state = _read(path)
    try:
        model = build_model(info.model_name, info.input_shape, info.num_classes, info.filters,
                            **info.model_options)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild model '{info.model_name}': {e}") from e
    return model.eval()
