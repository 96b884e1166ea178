"""Stages download and prepare: official archive -> raw files + manifest -> z-scored arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microai.config import section


def download(dataset: str, params: dict[str, Any], raw_dir: Path) -> Path:
    """Fetch a dataset's official archives (or check a local mirror) into ``raw_dir``."""
    from microai.data import download_dataset

    return download_dataset(dataset, section(params, "datasets", dataset), Path(raw_dir))


def prepare(dataset: str, params: dict[str, Any], raw_dir: Path, out_npz: Path) -> Path:
    """Official format -> the paper's preprocessing -> z-scored ``.npz``."""
    from microai.data import prepare_dataset

    return prepare_dataset(dataset, section(params, "datasets", dataset), Path(raw_dir), Path(out_npz))
