"""A ``.tflite`` model on a Cortex-M board: the harness + the TFLM adapter + the cached TFLM library.

The adapter (firmware/tflm/tflm_adapter.cc) is compiled with the library's flags against the model's
generated sources; the board links it with the harness, ``libtflm.a`` and libstdc++ through its usual
build, so ROM/RAM, "does not fit" and the line protocol are the same as for MicroAI's own code.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile

from microai.deploy.boards.base import Board, BuildResult, CortexMBoard
from microai.deploy.errors import BuildError
from microai.deploy.tflm.library import CXX, TflmLibrary
from microai.deploy.tflm.sources import ADAPTER_DIR, ModelSources, write_model_sources
from microai.deploy.tflm.tree import TflmTree
from microai.deploy.toolchain import FIRMWARE, require_tool, run_checked

ADAPTER = ADAPTER_DIR / "tflm_adapter.cc"
_MISSING_KERNEL = re.compile(r"undefined reference to [`']tflite::Register_(\w+)\(\)")


def build_tflm_firmware(board: Board, tflite: Path, tree: TflmTree, library: TflmLibrary,
                        host_arena_bytes: int, vectors: np.ndarray, out_dir: Path,
                        opt: str = "-O2") -> tuple[BuildResult, ModelSources]:
    """Build ``tflite`` for ``board`` with ``vectors`` (raw input-tensor values, one row per vector).

    ``opt`` must be the level ``library`` was built at. Raises BuildError naming a missing kernel or
    operator, DoesNotFit when the image exceeds the board's flash or RAM.
    """
    if not isinstance(board, CortexMBoard):
        raise BuildError(f"TFLite Micro on-board builds target the Cortex-M boards, not {board.name}")
    if opt not in library.cxx_flags:
        raise BuildError(f"the TFLite Micro library {library.archive} was built with other flags than {opt}")
    out_dir = Path(out_dir)
    sources = write_model_sources(tflite, tree, host_arena_bytes, out_dir / "model")
    adapter = out_dir / "tflm_adapter.o"
    run_checked([require_tool(CXX), *library.cxx_flags, f"-I{FIRMWARE}", f"-I{sources.folder}",
                 "-c", ADAPTER, "-o", adapter], f"compiling the TFLite Micro adapter for {tflite}")
    try:
        build = board.build(sources.folder, vectors, out_dir, opt,
                            link=[adapter, library.archive, "-lstdc++"])
    except BuildError as e:
        kernels = sorted(set(_MISSING_KERNEL.findall(str(e))))
        if kernels:
            raise BuildError(f"{tflite}: the TFLite Micro tree {tree.root} has no kernel for operator(s) "
                             f"{kernels} (tflite::Register_...() undefined at link time)") from e
        raise
    _check_no_static_constructors(build.elf)
    return build, sources


def _check_no_static_constructors(elf: Path) -> None:
    """The harness's startup (firmware/cortex_m/startup.c) runs no C++ static constructors: refuse an
    image that would need them rather than run it with objects left unconstructed."""
    with elf.open("rb") as f:
        sections = {s.name: s["sh_size"] for s in ELFFile(f).iter_sections()}
    needed = [name for name in (".preinit_array", ".init_array", ".ctors") if sections.get(name)]
    if needed:
        raise BuildError(f"{elf}: the TFLite Micro image has static constructors ({', '.join(needed)}), "
                         "which the harness's startup code does not run")
