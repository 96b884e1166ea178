"""Datasets: download official archives (sha256-verified) and prepare normalized train/test arrays.

``download_dataset`` and ``prepare_dataset`` are the two pipeline stages; ``load_prepared``
reads their output. Names: ``synthetic-har`` (offline default), ``uci-har``, ``smnist``,
``fsdd``, ``gtsrb``.
"""

from microai.data.errors import DatasetError
from microai.data.prepared import PreparedDataset, load_prepared
from microai.data.registry import DATASETS, download_dataset, prepare_dataset, why_unobtainable

__all__ = [
    "DATASETS",
    "DatasetError",
    "PreparedDataset",
    "download_dataset",
    "load_prepared",
    "prepare_dataset",
    "why_unobtainable",
]
