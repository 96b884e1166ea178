"""``host``: the same harness built natively with gcc, for bit-exactness on whole test sets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from microai.deploy.boards.base import Board, BuildResult, RunResult, build_inputs, elf_of
from microai.deploy.errors import DeployError, RunTimeout
from microai.deploy.protocol import parse_lines
from microai.deploy.toolchain import (
    C_FLAGS,
    FIRMWARE,
    HARNESS_SOURCES,
    path_maps,
    run_checked,
)


class Host(Board):
    name = "host"
    run_counts = "ns"  # wall time of the native build on this machine, not a microcontroller's cycles
    clock_hz = None

    def __init__(self, cc: str = "gcc") -> None:
        self.cc = cc

    def build(self, sources: Path, vectors: np.ndarray, out_dir: Path, opt: str = "-O2") -> BuildResult:
        cc, library, vectors_c = build_inputs(self.cc, sources, vectors, out_dir)
        exe = out_dir / "firmware"
        run_checked([cc, *C_FLAGS, opt, *path_maps(out_dir), "-ffp-contract=off", f"-I{FIRMWARE}",
                     f"-I{sources}",
                     *HARNESS_SOURCES, self.folder / "board.c", *library, vectors_c, "-o", exe, "-lm"],
                    f"building host harness in {out_dir}")
        return BuildResult.of(self.name, exe, vectors)

    def flash(self, elf: Path) -> None:
        """Nothing to do: the executable runs in place."""
        elf_of(elf)

    def run(self, target: Path | BuildResult, timeout: float = 600.0) -> RunResult:
        exe = elf_of(target)
        try:
            proc = subprocess.run([str(exe)], capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            last = (e.stdout or b"").splitlines()[-1:] or [b""]
            raise RunTimeout(f"{exe}: no END line within {timeout:g} s; "
                             f"last line read: {last[0]!r}") from None
        source = f"host run of {exe}"
        report = parse_lines(proc.stdout.splitlines(), source)
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            raise DeployError(f"{source}: exit code {proc.returncode}: {stderr}")
        return RunResult(self.name, report.outputs, report.ticks, None, "host wall-clock ns (clock_gettime)")
