"""The prepared format: normalized train/test arrays in one deterministic ``.npz``.

Keys in the file: ``x_train``, ``y_train``, ``x_test``, ``y_test``, ``mean``, ``std``,
``class_names`` (unicode array), ``provenance`` (JSON text) and, when the dataset knows them,
``subjects_train`` / ``subjects_test``. Every array is stored without pickling and the zip
entries carry a fixed timestamp, so the same inputs give a byte-identical file (DVC and
Snakemake then see no change and rebuild nothing downstream).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microai.data.atomic import atomic_output
from microai.data.errors import DatasetError

FORMAT_VERSION = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test", "mean", "std")
_SUBJECT_KEYS = ("subjects_train", "subjects_test")


@dataclass
class RawSplits:
    """A dataset's official train/test split after its own preprocessing, before normalization."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    preprocessing: dict[str, Any]
    subjects_train: np.ndarray | None = None
    subjects_test: np.ndarray | None = None


@dataclass
class PreparedDataset:
    """Channels-first float32 inputs (``N x C x L`` or ``N x C x H x W``) z-scored per channel.

    ``mean`` and ``std`` (float32, one value per channel) are the training-set statistics that
    were applied; a deployed model must normalize its raw inputs with them.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    provenance: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray
    subjects_train: np.ndarray | None = None
    subjects_test: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_split("train", self.x_train, self.y_train, self.subjects_train, len(self.class_names))
        _check_split("test", self.x_test, self.y_test, self.subjects_test, len(self.class_names))
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetError(
                f"train inputs {self.x_train.shape[1:]} and test inputs {self.x_test.shape[1:]} "
                "differ in shape"
            )
        channels = self.x_train.shape[1]
        for name in ("mean", "std"):
            stat = getattr(self, name)
            if stat.dtype != np.float32 or stat.shape != (channels,):
                raise DatasetError(
                    f"{name} must be float32 of shape ({channels},), got {stat.dtype} {stat.shape}"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input without the batch dimension, channels first."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_splits(cls, splits: RawSplits, provenance: dict[str, Any]) -> PreparedDataset:
        """Z-score every channel with statistics of the training split only and attach provenance."""
        mean, std = channel_statistics(splits.x_train)
        provenance = {
            **provenance,
            "preprocessing": {
                **splits.preprocessing,
                "normalization": "z-score per channel with training-set mean/std (std 0 -> 1)",
            },
        }
        return cls(
            x_train=standardize(splits.x_train, mean, std),
            y_train=np.asarray(splits.y_train, dtype=np.int64),
            x_test=standardize(splits.x_test, mean, std),
            y_test=np.asarray(splits.y_test, dtype=np.int64),
            class_names=list(splits.class_names),
            provenance=provenance,
            mean=mean,
            std=std,
            subjects_train=_optional_int64(splits.subjects_train),
            subjects_test=_optional_int64(splits.subjects_test),
        )


def _optional_int64(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.asarray(a, dtype=np.int64)


def _check_split(
    split: str, x: np.ndarray, y: np.ndarray, subjects: np.ndarray | None, num_classes: int
) -> None:
    if x.dtype != np.float32 or x.ndim not in (3, 4):
        raise DatasetError(f"x_{split} must be float32 N x C x L or N x C x H x W, got {x.dtype} {x.shape}")
    if y.dtype != np.int64 or y.shape != (x.shape[0],):
        raise DatasetError(f"y_{split} must be int64 of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(f"y_{split} has labels outside 0..{num_classes - 1}: {y.min()}..{y.max()}")
    if subjects is not None and subjects.shape != y.shape:
        raise DatasetError(f"subjects_{split} has shape {subjects.shape}, expected {y.shape}")


def channel_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (axis 1 is the channel), computed in float64.

    A channel that is constant in the training set (or whose spread is below float32's smallest
    normal number, which would be stored as 0 or a denormal) gets std 1 so normalization stays finite.
    """
    if x.ndim < 3 or x.shape[0] == 0:
        raise DatasetError(f"cannot compute channel statistics of an array of shape {x.shape}")
    axes = (0, *range(2, x.ndim))
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes)
    std = x64.std(axis=axes)
    std[std < np.finfo(np.float32).tiny] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` per channel, as float32."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    out = (x.astype(np.float64) - mean.reshape(shape)) / std.reshape(shape)
    return out.astype(np.float32)


def save_prepared(dataset: PreparedDataset, path: Path) -> Path:
    """Write ``dataset`` to ``path`` atomically: a temporary file in the same folder, then a rename."""
    arrays: dict[str, np.ndarray] = {key: getattr(dataset, key) for key in _ARRAY_KEYS}
    arrays["class_names"] = np.array(dataset.class_names, dtype=np.str_)
    document = {"format_version": FORMAT_VERSION, **dataset.provenance}
    arrays["provenance"] = np.array(json.dumps(document, sort_keys=True), dtype=np.str_)
    for key in _SUBJECT_KEYS:
        if getattr(dataset, key) is not None:
            arrays[key] = getattr(dataset, key)
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return path


def load_prepared(path: Path) -> PreparedDataset:
    """Read a file written by :func:`save_prepared`; a damaged or foreign file raises DatasetError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable prepared dataset ({exc})") from exc
    missing = [key for key in (*_ARRAY_KEYS, "class_names", "provenance") if key not in arrays]
    if missing:
        raise DatasetError(f"{path}: prepared dataset lacks {', '.join(missing)}")
    try:
        provenance = json.loads(arrays["provenance"].item())
    except (ValueError, AttributeError) as exc:
        raise DatasetError(f"{path}: provenance is not JSON text ({exc})") from exc
    version = provenance.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise DatasetError(f"{path}: prepared format version {version}, this code reads {FORMAT_VERSION}")
    try:
        return PreparedDataset(
            **{key: arrays[key] for key in _ARRAY_KEYS},
            class_names=[str(name) for name in arrays["class_names"]],
            provenance=provenance,
            **{key: arrays.get(key) for key in _SUBJECT_KEYS},
        )
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from exc
