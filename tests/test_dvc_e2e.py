"""DVC on the generated dvc.yaml with the tiny configuration, in a scratch copy of the repository
(slow: minutes): repro twice, metrics/plots/experiments, a local remote and a fresh clone."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pipeline_support import ROOT, tiny_params, write_params

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
# Stage commands call `python`: the project's interpreter goes first on PATH (as in `make repro`).
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "GIT_AUTHOR_NAME": "test",
       "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@t"}


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=1500)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dvc(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(cwd, str(BIN / "dvc"), *args, check=check)


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", *args).stdout


def dvc_params() -> dict:
    """The tiny configuration with two precisions on the emulated board: DVC runs one stage at a time."""
    params = tiny_params()
    params["sweep"].update(precisions=["float32", "int8"], boards=["qemu-m4"])
    return params


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The repository's files (as in this checkout), the tiny params.yaml, reproduced once, committed."""
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    write_params(repo / "params.yaml", dvc_params())
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tiny")
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "reproduced")
    return repo


def test_second_repro_does_nothing_and_status_is_clean(repo):
    out = dvc(repo, "repro").stdout
    assert "Running stage" not in out, out[-3000:]
    assert "Data and pipelines are up to date" in dvc(repo, "status").stdout
    assert git(repo, "status", "--porcelain") == "", "a no-op repro changed dvc.lock or a git-tracked result"


def test_dvc_and_snakemake_make_the_same_table(repo, tiny_run):
    """The same stages from the same table: DVC's rows equal the Snakemake run's, cell by cell."""
    ours = pd.read_csv(repo / "results" / "tables.csv")
    snake = pd.read_csv(tiny_run / "results" / "tables.csv")
    snake = snake[snake.precision.isin(ours.precision) & snake.board.isin(ours.board)].reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, snake, check_exact=True)


def test_metrics_and_plots_are_read_from_git_tracked_files(repo):
    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    metrics = shown[""]["data"]["results/metrics.json"]["data"]
    int8 = metrics["synthetic-har"]["resnetv1-6-f4"]["microai"]["int8"]
    assert 0 <= int8["accuracy_mean"] <= 100 and int8["qemu-m4"]["rom_bytes"] > 0
    assert "results/metrics.json" in git(repo, "ls-files", "results")
    plots = json.loads(dvc(repo, "plots", "show", "--json").stdout)["data"]
    assert {"accuracy-vs-filters", "rom-at-max-filters", "energy-vs-filters"} <= set(plots)
    assert any(p.endswith("accuracy_vs_filters.png") for p in plots)


def test_push_to_a_local_remote_and_pull_into_a_fresh_clone(repo, tmp_path):
    dvc(repo, "remote", "add", "--force", "-d", "shared", str(tmp_path / "remote"))
    git(repo, "commit", "-qam", "remote")
    dvc(repo, "push")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    dvc(clone, "pull")
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout
    pd.testing.assert_frame_equal(pd.read_csv(clone / "results" / "tables.csv"),
                                  pd.read_csv(repo / "results" / "tables.csv"))


def test_experiment_with_a_changed_parameter_shows_its_metrics(repo):
    dvc(repo, "exp", "run", "-n", "one-epoch", "--set-param", "train.synthetic-har.epochs=1",
        "--set-param", "train.synthetic-har.milestones=[1]")
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    exps = [e for baseline in shown for e in (baseline.get("experiments") or [])]
    exp = next(e for e in exps if e.get("name") == "one-epoch")
    data = exp["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["synthetic-har"]["epochs"] == 1
    acc = data["metrics"]["results/metrics.json"]["data"]["synthetic-har"]["resnetv1-6-f4"]["microai"]
    assert set(acc) == {"float32", "int8"}
    table = dvc(repo, "exp", "show", "--csv").stdout
    assert "one-epoch" in table and "synthetic-har.resnetv1-6-f4.microai.int8.accuracy_mean" in table
