"""``qemu-m4``: the emulated Cortex-M4F (QEMU mps2-an386), the default board; runs everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from microai.deploy.boards.base import BuildResult, CortexMBoard, RunResult, elf_of, locate_fault
from microai.deploy.errors import FirmwareFault
from microai.deploy.qemu import run_qemu, ticks_to_instructions
from microai.deploy.toolchain import memory_regions, resize_regions


class QemuM4(CortexMBoard):
    """``flash_bytes`` / ``ram_bytes`` shrink the emulated memories to a real part's sizes."""

    name = "qemu-m4"
    estimable = True
    run_counts = "instructions"

    def __init__(self, flash_bytes: int | None = None, ram_bytes: int | None = None, shift: int = 7,
                 stack_bytes: int = 8192) -> None:
        super().__init__(stack_bytes)
        self.shift = shift
        self.lengths = {r: n for r, n in (("FLASH", flash_bytes), ("RAM", ram_bytes)) if n is not None}
        full = memory_regions(self.folder / "linker.ld")
        for region, n in self.lengths.items():
            if not 0 < n <= full[region][1]:
                raise ValueError(f"{self.name}: {region} size {n} outside 1..{full[region][1]} bytes")

    def linker_script(self, out_dir: Path) -> Path:
        if not self.lengths:
            return super().linker_script(out_dir)
        return resize_regions(self.folder / "linker.ld", self.lengths, out_dir / "linker.ld")

    def flash(self, elf: Path) -> None:
        """Nothing to do: QEMU loads the ELF at each run."""
        elf_of(elf)

    def run(self, target: Path | BuildResult, timeout: float = 60.0) -> RunResult:
        elf = elf_of(target)
        try:
            report = run_qemu(elf, timeout, self.shift)
        except FirmwareFault as fault:
            raise locate_fault(fault, elf) from None
        instructions = np.array([ticks_to_instructions(int(t), self.shift) for t in report.ticks],
                                dtype=np.int64)
        return RunResult(self.name, report.outputs, instructions, report.stack_bytes,
                         "instructions (QEMU icount)", report.arena_bytes)
