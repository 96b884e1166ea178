"""The tiny end-to-end configuration shared by the pipeline tests (Snakemake, SLURM, DVC)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import yaml

from microai.config import load_params

ROOT = Path(__file__).resolve().parent.parent


def tiny_params() -> dict:
    p = copy.deepcopy(load_params(ROOT / "params.yaml"))
    p["sweep"].update(filters=[4], runs=[0], boards=["qemu-m4", "nucleo-l452re-p"])
    p["datasets"]["synthetic-har"].update(n_train=240, n_test=60)
    p["train"]["synthetic-har"].update(epochs=2, milestones=[1])
    p["qat"]["synthetic-har"].update(epochs=1, milestones=[1])
    p["deploy"].update(vectors=3, timeout_s=60)
    return p


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def snakemake(workdir: Path, *args: str, env: dict | None = None, timeout: float = 1500
              ) -> subprocess.CompletedProcess:
    """Snakemake on the repository's Snakefile in ``workdir``, with ``workdir/params.yaml``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--configfile", str(workdir / "params.yaml"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def failure_report(proc: subprocess.CompletedProcess, workdir: Path) -> str:
    logs = "\n".join(f"--- {f}\n{f.read_text()[-3000:]}"
                     for f in sorted((workdir / "logs").rglob("*.log")) if f.stat().st_size)
    return f"pipeline failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\n{logs}"
