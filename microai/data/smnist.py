"""``smnist``: the spoken part of the "Written and spoken digits database for multimodal learning"
(Khacef et al., Zenodo record 3515935, v1.0), the paper's spoken-digit dataset.

Layout (from the Zenodo record): NumPy files ``data_sp_train.npy`` (60000 x 507),
``data_sp_test.npy`` (10000 x 507), ``labels_train.npy`` and ``labels_test.npy`` (digits 0-9).
The utterances come from Google Speech Commands (34801 train / 4107 test); the publishers
already extracted 12 MFCC + energy over 39 frames of 50 ms with a 25 ms shift, standardized and
normalized them, and duplicated random training/test utterances to reach 60000 / 10000 rows
(aligned with MNIST). Each row is read as 39 frames x 13 coefficients in row-major order, the
layout every published loader of this record uses, and transposed to channels-first
``(N, 13, 39)``; the coefficient order inside a frame is the publishers'. Our per-channel z-score
with training statistics is applied on top of their normalization.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from microai.data.errors import DatasetError
from microai.data.prepared import RawSplits
from microai.data.sources import OfficialFile
from microai.data.spec import DatasetSpec

FRAMES = 39
COEFFICIENTS = 13
CLASS_NAMES = [str(d) for d in range(10)]
_RECORD = "https://zenodo.org/record/3515935/files"


def _official(key: str, filename: str) -> OfficialFile:
    # Zenodo publishes md5 digests only, so the sha256 must come from the configuration.
    return OfficialFile(key=key, filename=filename, url=f"{_RECORD}/{filename}?download=1", sha256=None)


OFFICIAL = (
    _official("train_data", "data_sp_train.npy"),
    _official("train_labels", "labels_train.npy"),
    _official("test_data", "data_sp_test.npy"),
    _official("test_labels", "labels_test.npy"),
)


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path.name}: not a readable .npy array ({exc})") from exc


def _split(data_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    data, labels = _load_array(data_path), _load_array(labels_path)
    if data.ndim != 2 or data.shape[1] != FRAMES * COEFFICIENTS:
        raise DatasetError(
            f"{data_path.name}: expected N x {FRAMES * COEFFICIENTS} features, got {data.shape}"
        )
    if not np.issubdtype(data.dtype, np.floating) or not np.isfinite(data).all():
        raise DatasetError(f"{data_path.name}: features must be finite floats, got dtype {data.dtype}")
    labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
    if labels.shape != (data.shape[0],):
        raise DatasetError(
            f"{labels_path.name}: {labels.shape} labels for the {data.shape[0]} rows of {data_path.name}"
        )
    as_int = labels.astype(np.int64)
    if not np.array_equal(as_int, labels) or as_int.min() < 0 or as_int.max() >= len(CLASS_NAMES):
        raise DatasetError(f"{labels_path.name}: labels must be integers 0..9")
    x = data.reshape(-1, FRAMES, COEFFICIENTS).transpose(0, 2, 1)
    return np.ascontiguousarray(x, dtype=np.float32), as_int


def load(files: dict[str, Path]) -> RawSplits:
    """The spoken split from the four Zenodo files (keys as in :data:`OFFICIAL`)."""
    x_train, y_train = _split(files["train_data"], files["train_labels"])
    x_test, y_test = _split(files["test_data"], files["test_labels"])
    return RawSplits(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=list(CLASS_NAMES),
        preprocessing={
            "features": "publishers' 12 MFCC + energy, 50 ms window, 25 ms shift, 39 frames (Zenodo 3515935)",
            "layout": "rows read as 39 frames x 13 coefficients, transposed to (13, 39)",
            "split": "official Zenodo train/test files (contain duplicated utterances)",
        },
    )


def _build(options: dict[str, Any], files: dict[str, Path]) -> RawSplits:
    return load(files)


SPEC = DatasetSpec(
    name="smnist",
    description="spoken digits of Zenodo 3515935 (Speech Commands MFCC), 13 x 39, 10 classes, 60000/10000",
    files=OFFICIAL,
    options={},
    build=_build,
)
