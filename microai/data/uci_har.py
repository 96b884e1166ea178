"""``uci-har``: the raw inertial signals of "Human Activity Recognition Using Smartphones" (UCI 240).

Input: the official download, a zip that contains ``UCI HAR Dataset.zip``, or that inner zip
itself. Layout: ``UCI HAR Dataset/{train,test}/Inertial Signals/<signal>_<split>.txt`` (one
128-sample window per line), ``y_<split>.txt`` (labels 1..6), ``subject_<split>.txt`` and
``activity_labels.txt``.

Output x: ``(N, 9, 128)`` float32, channels in this order: body_acc_x, body_acc_y, body_acc_z,
body_gyro_x, body_gyro_y, body_gyro_z, total_acc_x, total_acc_y, total_acc_z (the paper's 9 x 128
input). Labels are shifted to 0..5; class names come from ``activity_labels.txt``; subject ids
are kept. The official 7352 / 2947 split is kept.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from microai.data.archive import find_member, open_zip, read_member
from microai.data.errors import DatasetError
from microai.data.prepared import RawSplits
from microai.data.sources import OfficialFile
from microai.data.spec import DatasetSpec

WINDOW = 128
CHANNELS = [f"{group}_{axis}" for group in ("body_acc", "body_gyro", "total_acc") for axis in "xyz"]
INNER_ZIP = "UCI HAR Dataset.zip"
_MARKER = "train/y_train.txt"
_LABEL_LINE = re.compile(rb"(\d+)\s+(\S+)\s*$")

OFFICIAL = OfficialFile(
    key="archive",
    filename="human+activity+recognition+using+smartphones.zip",
    url="https://archive.ics.uci.edu/static/public/240/human+activity+recognition+using+smartphones.zip",
    # Outer official download, then the inner "UCI HAR Dataset.zip" (both published as pins by
    # independent third-party projects; not stated by UCI itself).
    sha256=(
        "c00b803081a5c797cd5e4b83700a9810b38d53d9d84e01917e090e1fdbc81031",
        "2045e435c955214b38145fb5fa00776c72814f01b203fec405152dac7d5bfeb0",
    ),
)


def _dataset_zip(path: Path) -> tuple[zipfile.ZipFile, str]:
    """The zip holding ``UCI HAR Dataset/``: the file itself or the inner zip of the official download."""
    outer = open_zip(path, path.name)
    names = outer.namelist()
    if any(n.endswith(_MARKER) and not n.startswith("__MACOSX/") for n in names):
        return outer, path.name
    with outer:
        inner_name = find_member(outer, INNER_ZIP, path.name)
        label = f"{path.name}:{inner_name}"
        return open_zip(read_member(outer, inner_name, path.name), label), label


def _read_table(archive: zipfile.ZipFile, name: str, label: str, dtype: type) -> np.ndarray:
    data = read_member(archive, name, label)
    try:
        return np.loadtxt(io.BytesIO(data), dtype=dtype, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"{label}: {name}: malformed table: {exc}") from exc


def _class_names(archive: zipfile.ZipFile, root: str, label: str) -> list[str]:
    """Names from ``activity_labels.txt`` lines ``<id> <NAME>``, ids 1..K in order."""
    name = f"{root}activity_labels.txt"
    pairs = []
    for line in read_member(archive, name, label).splitlines():
        if line.strip():
            match = _LABEL_LINE.search(line)
            if match is None:
                raise DatasetError(f"{label}: {name}: cannot parse line {line!r}")
            pairs.append((int(match[1]), match[2].decode("ascii")))
    ids = [i for i, _ in pairs]
    if ids != list(range(1, len(ids) + 1)):
        raise DatasetError(f"{label}: {name}: activity ids must be 1..K in order, got {ids}")
    return [n for _, n in pairs]


def _split(archive: zipfile.ZipFile, root: str, split: str, label: str, num_classes: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tables: dict[str, np.ndarray] = {}
    for channel in CHANNELS:
        name = f"{root}{split}/Inertial Signals/{channel}_{split}.txt"
        table = _read_table(archive, name, label, np.float64)
        if table.shape[1] != WINDOW:
            raise DatasetError(f"{label}: {name}: rows have {table.shape[1]} values, expected {WINDOW}")
        tables[name] = table
    y_name, s_name = f"{root}{split}/y_{split}.txt", f"{root}{split}/subject_{split}.txt"
    tables[y_name] = _read_table(archive, y_name, label, np.int64)
    tables[s_name] = _read_table(archive, s_name, label, np.int64)
    rows = {name: table.shape[0] for name, table in tables.items()}
    if len(set(rows.values())) != 1:
        expected = rows[y_name]
        bad = [f"{name} has {n}" for name, n in rows.items() if n != expected]
        raise DatasetError(
            f"{label}: row counts disagree: {y_name} has {expected} rows but " + "; ".join(bad)
        )
    y = tables[y_name][:, 0]
    if y.size == 0:
        raise DatasetError(f"{label}: {y_name} has no rows")
    if y.min() < 1 or y.max() > num_classes:
        raise DatasetError(f"{label}: {y_name}: labels must be 1..{num_classes}, found {y.min()}..{y.max()}")
    x = np.stack([tables[f"{root}{split}/Inertial Signals/{c}_{split}.txt"] for c in CHANNELS], axis=1)
    return x.astype(np.float32), y - 1, tables[s_name][:, 0]


def load(path: Path) -> RawSplits:
    """Read the official archive (outer or inner zip) at ``path``."""
    archive, label = _dataset_zip(Path(path))
    with archive:
        root = find_member(archive, _MARKER, label)[: -len(_MARKER)]
        class_names = _class_names(archive, root, label)
        x_train, y_train, s_train = _split(archive, root, "train", label, len(class_names))
        x_test, y_test, s_test = _split(archive, root, "test", label, len(class_names))
    return RawSplits(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=class_names,
        preprocessing={"channels": CHANNELS, "window": WINDOW, "sample_rate_hz": 50.0,
                       "signals": "raw Inertial Signals as published (acc in g, gyro in rad/s)"},
        subjects_train=s_train, subjects_test=s_test,
    )


def _build(options: dict[str, Any], files: dict[str, Path]) -> RawSplits:
    return load(files["archive"])


SPEC = DatasetSpec(
    name="uci-har",
    description="UCI-HAR raw inertial signals, 9 x 128, 6 classes, official 7352/2947 split",
    files=(OFFICIAL,),
    options={},
    build=_build,
)
