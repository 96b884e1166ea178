"""Fixture builders shared by the tests/test_data_*.py files (archives in official layouts)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from microai.data.archive import sha256_of

#: The shared inputs lie beside the repository (CI lays shared/ beside the clone); MICROAI_SHARED
#: points elsewhere.
SHARED = Path(os.environ.get("MICROAI_SHARED", Path(__file__).resolve().parent.parent.parent / "shared"))
DATASETS = SHARED / "datasets"
FSDD_ZIP = DATASETS / "fsdd" / "free-spoken-digit-dataset_26eb9aa.zip"
FSDD_SHA256 = "15c0f186942ce6fe65186f17ed2e7cf89cf88b7e1fa1b276cc6a6ced151b6eef"
UCI_SMALL_ZIP = DATASETS / "uci_har" / "UCI_HAR_Dataset_v1.0_small_files_only.zip"
UCI_CSV_ZIP = DATASETS / "uci_har" / "alex-manch_UCI_HAR_inertial_csv_5sigdig.zip"


def needs_shared(*paths: Path) -> pytest.MarkDecorator:
    """Skip unless these shared files exist (under CI=true such a skip fails the run: conftest.py)."""
    missing = [str(p) for p in paths if not p.is_file()]
    return pytest.mark.skipif(bool(missing), reason=f"shared input not present: {', '.join(missing)} "
                                                    f"(../shared beside the repository, or MICROAI_SHARED)")


def write_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """A zip with ``members`` (name -> bytes) in insertion order."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    write_zip(buffer, members)  # type: ignore[arg-type]  # ZipFile accepts a file object
    return buffer.getvalue()


def source_cfg(path: Path, **extra: object) -> dict[str, object]:
    """A single-file dataset section pointing at ``path`` as a file:// URL, pinned to its digest."""
    return {"url": path.resolve().as_uri(), "sha256": sha256_of(path), **extra}


def uci_text(matrix: np.ndarray) -> bytes:
    """UCI-HAR's text format: per value two spaces (one before a minus) and a 3-digit exponent."""
    magnitude = np.abs(matrix[matrix != 0])
    assert magnitude.size == 0 or (magnitude.min() > 1e-99 and magnitude.max() < 1e99)  # 2-digit exponents
    row_format = "%15.7e" * matrix.shape[1]
    text = "\n".join(row_format % tuple(row) for row in matrix.tolist()) + "\n"
    return text.replace("e-", "e-0").replace("e+", "e+0").encode()


def uci_int_column(values: np.ndarray) -> bytes:
    return "".join(f"{int(v)}\n" for v in values).encode()
