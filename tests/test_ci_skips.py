"""Under CI=true a test that skips fails the run (tests/conftest.py); elsewhere it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_support import SHARED

HERE = Path(__file__).resolve().parent


def _run_pytest(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    (folder / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (folder / "test_needs_data.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.skipif(True, reason='shared input not present: /nowhere/data.zip')\n"
        "def test_real_data():\n    pass\n\n"
        "def test_other():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": ci} if ci else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                          capture_output=True, text=True, env=env, cwd=folder, check=False)


@pytest.mark.parametrize("ci,code", [("true", 1), (None, 0)])
def test_a_skip_fails_only_under_ci(tmp_path: Path, ci: str | None, code: int) -> None:
    proc = _run_pytest(tmp_path, ci)
    assert proc.returncode == code, proc.stdout
    if code:
        assert "skipped under CI=true" in proc.stdout and "/nowhere/data.zip" in proc.stdout
        assert "1 passed, 1 error" in proc.stdout  # a skipif marker skips in the setup phase
    else:
        assert "1 passed, 1 skipped" in proc.stdout


def test_shared_inputs_are_found_beside_the_repository() -> None:
    assert SHARED == Path(os.environ.get("MICROAI_SHARED", HERE.parent.parent / "shared"))
    assert "/work/shared" not in (HERE / "test_data_support.py").read_text()
