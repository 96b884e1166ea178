"""The board interface (build / flash / run) and the cross-build shared by the Cortex-M boards."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from microai.deploy.errors import BuildError, DoesNotFit, FirmwareFault
from microai.deploy.symbols import FunctionMap
from microai.deploy.toolchain import (
    C_FLAGS,
    CORTEX_M,
    CORTEX_M4F_FLAGS,
    FIRMWARE,
    HARNESS_SOURCES,
    LINK_FLAGS,
    library_sources,
    memory_regions,
    overflowed_regions,
    path_maps,
    require_tool,
    resize_regions,
    run_checked,
    section_sizes,
)
from microai.deploy.vectors import write_vectors_c

BOARDS_DIR = FIRMWARE / "boards"


@dataclass(frozen=True)
class BuildResult:
    """A linked firmware image and its memory footprint (bytes).

    ``rom_bytes`` = text + data (flash: code, constants, initial values of .data) less the
    ``vector_bytes`` of embedded test inputs, which a deployed application does not carry;
    ``ram_bytes`` = data + bss + the stack reserve.
    """

    board: str
    elf: Path
    text: int
    data: int
    bss: int
    stack_reserve: int
    vectors: int
    vector_bytes: int
    rom_bytes: int = field(init=False)
    ram_bytes: int = field(init=False)

    @classmethod
    def of(cls, board: str, elf: Path, vectors: np.ndarray) -> BuildResult:
        """The footprint of a linked ``elf`` that embeds ``vectors`` (stack reserve: its .stack section)."""
        sizes = section_sizes(elf)
        return cls(board, elf, sizes["text"], sizes["data"], sizes["bss"], sizes["stack"],
                   int(vectors.shape[0]), int(vectors.nbytes))

    def __post_init__(self) -> None:
        object.__setattr__(self, "rom_bytes", self.text + self.data - self.vector_bytes)
        object.__setattr__(self, "ram_bytes", self.data + self.bss + self.stack_reserve)


@dataclass(frozen=True)
class RunResult:
    """Outputs (N, K) in the library's dtype, per-vector ``cycles`` in the unit ``how_measured`` names;
    ``arena_bytes``: (used, size) of a runtime's tensor arena (TFLM), as the firmware reported it."""

    board: str
    outputs: np.ndarray
    cycles: np.ndarray
    stack_bytes_used: int | None
    how_measured: str
    arena_bytes: tuple[int, int] | None = None


class Board(ABC):
    """One target: a folder under firmware/boards/ plus a subclass of this.

    ``physical``: a real device (flash programs hardware); ``estimable``: its images run in the
    Unicorn cycle estimator; ``run_counts``: what the per-vector counts of ``run()`` are --
    ``cycles`` of the core (DWT->CYCCNT), ``instructions`` (an emulator) or ``ns`` of wall time (the
    host); ``clock_hz`` converts cycles to time; ``run_current_a`` at ``supply_v`` (the paper's
    datasheet figures) gives energy, None if unknown.
    """

    name: str
    physical = False
    estimable = False
    run_counts = "cycles"
    clock_hz: int | None = 48_000_000
    supply_v = 3.3
    run_current_a: float | None = None

    @property
    def folder(self) -> Path:
        return BOARDS_DIR / self.name

    @abstractmethod
    def build(self, sources: Path, vectors: np.ndarray, out_dir: Path, opt: str = "-O2") -> BuildResult:
        """Compile the harness + generated library in ``sources`` + ``vectors`` into ``out_dir``."""

    @abstractmethod
    def flash(self, elf: Path) -> None:
        """Put the image on the target (a no-op where ``run`` loads it itself)."""

    @abstractmethod
    def run(self, target: Path | BuildResult, timeout: float = 60.0) -> RunResult:
        """Run an image and read its report."""


def locate_fault(fault: FirmwareFault, elf: Path) -> FirmwareFault:
    """The same fault with the functions holding the stacked PC and LR named from the ELF's symbols."""
    functions = FunctionMap(elf)
    where = ", ".join(f"{reg} in {functions.describe(fault.registers[reg])}"
                      for reg in ("PC", "LR") if reg in fault.registers)
    return FirmwareFault(f"{fault} ({where})", fault.kind, fault.registers)


def build_inputs(compiler: str, sources: Path, vectors: np.ndarray,
                 out_dir: Path) -> tuple[str, list[Path], Path]:
    """What every board's build starts from: the compiler's path, the generated library's sources
    and ``out_dir/vectors.c`` holding the embedded test inputs."""
    tool = require_tool(compiler)
    out_dir.mkdir(parents=True, exist_ok=True)
    return tool, library_sources(sources), write_vectors_c(vectors, out_dir / "vectors.c")


def elf_of(target: Path | BuildResult) -> Path:
    elf = target.elf if isinstance(target, BuildResult) else Path(target)
    if not elf.is_file():
        raise BuildError(f"{elf}: firmware image not found")
    return elf


class CortexMBoard(Board):
    """Cross-build for a Cortex-M4F board: harness + shared startup + the board's board.c/linker.ld."""

    gcc = "arm-none-eabi-gcc"

    def __init__(self, stack_bytes: int = 8192) -> None:
        if stack_bytes <= 0 or stack_bytes % 8:
            raise ValueError(f"stack_bytes must be a positive multiple of 8, got {stack_bytes}")
        self.stack_bytes = stack_bytes

    def linker_script(self, out_dir: Path) -> Path:
        """The script to link with; boards that resize their memory write a copy to out_dir."""
        return self.folder / "linker.ld"

    def build(self, sources: Path, vectors: np.ndarray, out_dir: Path, opt: str = "-O2",
              link: Sequence[str | Path] = ()) -> BuildResult:
        """``link``: objects, archives and ``-l`` options linked after the sources (e.g. the TFLM
        adapter's object, libtflm.a and -lstdc++)."""
        gcc, library, vectors_c = build_inputs(self.gcc, sources, vectors, out_dir)
        elf = out_dir / "firmware.elf"
        script = self.linker_script(out_dir)
        compile_cmd = [
            gcc, *CORTEX_M4F_FLAGS, *C_FLAGS, opt, *path_maps(out_dir),
            f"-I{FIRMWARE}", f"-I{CORTEX_M}", f"-I{self.folder}", f"-I{sources}",
            *HARNESS_SOURCES, CORTEX_M / "startup.c", self.folder / "board.c", *library, vectors_c, *link,
            *LINK_FLAGS, f"-L{CORTEX_M}", f"-Wl,--defsym=__stack_size={self.stack_bytes}",
        ]
        try:
            map_file = f"-Wl,-Map={out_dir / 'firmware.map'}"
            run_checked([*compile_cmd, "-T", script, map_file, "-o", elf, "-lm"],
                        f"building {self.name} firmware in {out_dir}")
        except BuildError as e:
            over = overflowed_regions(str(e))
            if not over:
                raise
            raise self._does_not_fit(compile_cmd, script, out_dir) from e
        return BuildResult.of(self.name, elf, vectors)

    def _does_not_fit(self, compile_cmd: list, script: Path, out_dir: Path) -> DoesNotFit:
        """Relink against unbounded memory to report what the image really needs."""
        regions = memory_regions(script)
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            big = resize_regions(script, {r: 0x4000000 for r in regions}, Path(tmp) / "unbounded.ld")
            probe = Path(tmp) / "unbounded.elf"
            run_checked([*compile_cmd, "-T", big, "-o", probe, "-lm"], f"measuring {self.name} firmware")
            sizes = section_sizes(probe)
        needs = {"FLASH": sizes["text"] + sizes["data"], "RAM": sizes["data"] + sizes["bss"] + sizes["stack"]}
        return DoesNotFit(self.name, needs, {r: regions[r][1] for r in ("FLASH", "RAM")})
