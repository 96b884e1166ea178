"""Hypothesis profiles, data fixtures shared by several test modules, and no silent skips in CI.

``make test`` and CI use ``repeatable``: every property test draws the same examples on every machine,
so a red CI run can be reproduced locally and a green one is not luck. To search for new failures,
run ``pytest --hypothesis-profile=explore`` (fresh random examples each run; failures are replayed
from ``.hypothesis/``).

Under ``CI=true`` a skipped test fails, unless its skip reason is in ``EXPECTED_SKIPS_IN_CI``: CI has
the shared datasets (``../shared``), the toolchain and the emulator, so a test that skips there
hides a broken set-up.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("repeatable")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny end-to-end configuration run once locally by Snakemake (slow: about a minute);
    the pipeline, report, SLURM and DVC tests compare with it."""
    from pipeline_support import failure_report, snakemake, tiny_params, write_params

    workdir = tmp_path_factory.mktemp("pipeline")
    write_params(workdir / "params.yaml", tiny_params())
    proc = snakemake(workdir, "--cores", "2")
    if proc.returncode != 0:
        pytest.fail(failure_report(proc, workdir))
    return workdir


@pytest.fixture(scope="session")
def synthetic_har(tmp_path_factory):
    """The default configuration's prepared synthetic-har (UCI-HAR's shape; 7352 train / 2947 test)."""
    from microai.data import download_dataset, load_prepared, prepare_dataset

    root = tmp_path_factory.mktemp("synthetic-har")
    cfg = {"seed": 0, "n_train": 7352, "n_test": 2947}
    download_dataset("synthetic-har", cfg, root / "raw")
    return load_prepared(prepare_dataset("synthetic-har", cfg, root / "raw", root / "synthetic-har.npz"))


#: Skip-reason substrings CI may show, each with why CI cannot provide what the test needs (none yet:
#: CI has every dataset and tool the tests use).
EXPECTED_SKIPS_IN_CI: dict[str, str] = {}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unexpected_skip(reason: str) -> bool:
    return not any(expected in reason for expected in EXPECTED_SKIPS_IN_CI)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if unexpected_skip(reason):
        report.outcome = "failed"
        report.longrepr = (f"skipped under CI=true, where its data and tools are provided: {reason}\n"
                           "(fix the CI set-up, or allow the reason in EXPECTED_SKIPS_IN_CI)")
