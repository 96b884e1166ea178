"""Hypothesis profiles and data fixtures shared by several test modules.

``make test`` and CI use ``repeatable``: every property test draws the same examples on every machine,
so a red CI run can be reproduced locally and a green one is not luck. To search for new failures,
run ``pytest --hypothesis-profile=explore`` (fresh random examples each run; failures are replayed
from ``.hypothesis/``).
"""

import pytest
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("repeatable")


@pytest.fixture(scope="session")
def synthetic_har(tmp_path_factory):
    """The default configuration's prepared synthetic-har (UCI-HAR's shape; 7352 train / 2947 test)."""
    from microai.data import download_dataset, load_prepared, prepare_dataset

    root = tmp_path_factory.mktemp("synthetic-har")
    cfg = {"seed": 0, "n_train": 7352, "n_test": 2947}
    download_dataset("synthetic-har", cfg, root / "raw")
    return load_prepared(prepare_dataset("synthetic-har", cfg, root / "raw", root / "synthetic-har.npz"))
