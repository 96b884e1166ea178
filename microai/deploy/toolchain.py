"""Cross-compiling the harness for Cortex-M4F with Debian's arm-none-eabi-gcc, and reading the result."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from microai.deploy.errors import BoardUnavailable, BuildError

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
CORTEX_M = FIRMWARE / "cortex_m"
HARNESS_SOURCES = (FIRMWARE / "main.c", FIRMWARE / "lineio.c")

CORTEX_M4F_FLAGS = (
    "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
    "-ffunction-sections", "-fdata-sections",
    "-ffp-contract=off",  # floats match the host and the reference bit for bit
)
C_FLAGS = ("-std=gnu11", "-g", "-Wall", "-Wextra")
LINK_FLAGS = ("-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections")

_OVERFLOW = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")
_REGION = re.compile(r"^\s*(\w+)\s*\([^)]*\)\s*:\s*ORIGIN\s*=\s*(\w+)\s*,\s*LENGTH\s*=\s*([^\n]+?)\s*$",
                     re.MULTILINE)


def path_maps(build_dir: Path) -> list[str]:
    """``-ffile-prefix-map`` options recording the working directory, the repository and ``build_dir``
    (a scratch folder with a random name) under fixed names in debug information and ``__FILE__``: a
    binary's bytes then depend neither on where the repository is checked out nor on that name. GCC
    applies the last option that matches, so the most specific folder comes last."""
    maps = [(Path.cwd(), "."), (REPO, "microai"), (build_dir.resolve(), "build")]
    if not build_dir.is_absolute():  # as written on the command line, too
        maps.append((build_dir, "build"))
    return [f"-ffile-prefix-map={folder}={name}" for folder, name in maps]


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BoardUnavailable(f"{name} not found on PATH (Debian: apt-get install gcc-arm-none-eabi "
                               "libnewlib-arm-none-eabi qemu-system-arm)")
    return path


def run_checked(cmd: Sequence[str | Path], what: str, cwd: Path | None = None) -> str:
    """Run a tool; raise BuildError with the command and the tool's diagnostics on failure."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{proc.stderr.strip()[-4000:]}")
    return proc.stdout


def library_sources(sources: Path) -> list[Path]:
    """The generated library's C files; the directory must also provide model.h and number.h."""
    if not sources.is_dir():
        raise BuildError(f"{sources}: generated library directory not found")
    missing = [h for h in ("model.h", "number.h") if not (sources / h).is_file()]
    if missing:
        raise BuildError(f"{sources}: generated library lacks {missing}")
    return sorted(sources.glob("*.c"))


def overflowed_regions(linker_stderr: str) -> dict[str, int]:
    """``{"FLASH": bytes over, ...}`` from GNU ld's "region `X' overflowed by N bytes" messages."""
    return {m[1]: int(m[2]) for m in _OVERFLOW.finditer(linker_stderr)}


def _size_expr(expr: str) -> int:
    total = 0
    for sign, number, unit in re.findall(r"([+-]?)\s*(0x[0-9a-fA-F]+|\d+)\s*([KM]?)", expr):
        value = int(number, 0) * {"": 1, "K": 1024, "M": 1024 * 1024}[unit]
        total += -value if sign == "-" else value
    return total


def memory_regions(linker_script: Path) -> dict[str, tuple[int, int]]:
    """``{"FLASH": (origin, length), "RAM": ...}`` from a linker script's MEMORY block."""
    regions = {m[1]: (int(m[2], 0), _size_expr(m[3])) for m in _REGION.finditer(linker_script.read_text())}
    if not {"FLASH", "RAM"} <= regions.keys():
        raise BuildError(f"{linker_script}: MEMORY must declare FLASH and RAM, found {sorted(regions)}")
    return regions


def resize_regions(linker_script: Path, lengths: dict[str, int], out: Path) -> Path:
    """Copy of a board linker script with some regions' LENGTH replaced (bytes)."""
    def repl(m: re.Match[str]) -> str:
        if m[1] not in lengths:
            return m[0]
        return m[0][: m.start(3) - m.start(0)] + f"0x{lengths[m[1]]:x}"
    out.write_text(_REGION.sub(repl, linker_script.read_text()))
    return out


def section_sizes(elf: Path) -> dict[str, int]:
    """Berkeley-style sizes of an ELF: text (read-only alloc), data (initialised RAM), bss, stack."""
    sizes = {"text": 0, "data": 0, "bss": 0, "stack": 0}
    with elf.open("rb") as f:
        for sec in ELFFile(f).iter_sections():
            flags = sec["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC:
                continue
            if sec.name == ".stack":
                sizes["stack"] += sec["sh_size"]
            elif sec["sh_type"] == "SHT_NOBITS":
                sizes["bss"] += sec["sh_size"]
            elif flags & SH_FLAGS.SHF_WRITE:
                sizes["data"] += sec["sh_size"]
            else:
                sizes["text"] += sec["sh_size"]
    return sizes
