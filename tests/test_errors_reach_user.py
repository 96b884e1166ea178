"""A failing stage tells the user why: one line without traceback, on the terminal and in its log."""

from __future__ import annotations

import copy
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from test_data_gtsrb import official_archives
from test_data_support import write_zip

from microai.config import load_params
from microai.data.archive import sha256_of

ROOT = Path(__file__).resolve().parent.parent


def test_a_dataset_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "workflow" / "scripts" / "prepare.py"),
           "--params", str(ROOT / "params.yaml"), "--dataset", "synthetic-har",
           "--raw-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.npz")]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: DatasetError: {tmp_path / 'nowhere' / 'manifest.json'} is missing: run the download stage "
        f"for 'synthetic-har' first"]
    assert proc.stdout.strip().endswith(proc.stderr.strip())  # stdout is another pipe: the terminal's copy


def _broken_gtsrb_workdir(tmp_path: Path) -> tuple[Path, Path]:
    """A work folder whose params point at GTSRB archives where one CSV row has the wrong size."""
    paths = official_archives(tmp_path / "archives")
    with zipfile.ZipFile(paths["train_images"]) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    csv = "GTSRB/Final_Training/Images/00000/GT-00000.csv"
    members[csv] = members[csv].replace(b";29;30;", b";30;30;")
    write_zip(paths["train_images"], members)
    params = copy.deepcopy(load_params(ROOT / "params.yaml"))
    params["sweep"]["datasets"] = ["gtsrb"]
    params["datasets"] = {"gtsrb": {"files": {k: {"path": str(p), "sha256": sha256_of(p)}
                                              for k, p in paths.items()}}}
    params["train"]["gtsrb"] = params["train"]["synthetic-har"]
    params["qat"]["gtsrb"] = params["qat"]["synthetic-har"]
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return workdir, paths["train_images"]


def test_snakemake_shows_the_cause_of_a_failed_stage(tmp_path: Path) -> None:
    workdir, archive = _broken_gtsrb_workdir(tmp_path)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--cores", "1", "data/prepared/gtsrb.npz"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "image is 29x30, its CSV row says 30x30" in terminal
    assert str(archive) in terminal
    assert "image is 29x30" in (workdir / "logs" / "prepare" / "gtsrb.log").read_text()
