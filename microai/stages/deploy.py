"""Stages compile and measure: MicroAI's firmware per board, its run and estimates (flash: boards.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microai.config import write_json
from microai.stages.boards import build_fields, build_into, measure_board


def _test_vectors(graph_path: Path, prepared_npz: Path, count: int):
    """The graph and the first ``count`` test inputs: what the firmware embeds and is checked on."""
    from microai.data import load_prepared
    from microai.graph import Graph

    return Graph.load(graph_path), load_prepared(Path(prepared_npz)).x_test[:count]


def compile_firmware(board_name: str, c_dir: Path, graph_path: Path, prepared_npz: Path, vectors: int,
                     opt: str, out_dir: Path) -> dict[str, Any]:
    """Cross-compile the harness + generated C for a board; fails with DoesNotFit naming the limits."""
    from codegen import pack_input
    from microai.deploy.boards import get_board

    board = get_board(board_name)
    packed = pack_input(*_test_vectors(graph_path, prepared_npz, vectors))

    def build(folder: Path) -> dict[str, Any]:
        return build_fields(board.build(Path(c_dir), packed, folder, opt=opt))

    return build_into(Path(out_dir), build, {"board": board_name, "opt": opt, "vectors": vectors})


def measure(board_name: str, board_cfg: dict[str, Any], build_json: Path, flash_json: Path, graph_path: Path,
            prepared_npz: Path, timeout: float, out_json: Path,
            emulated_elf: Path | None = None) -> dict[str, Any]:
    """Run the firmware, check its outputs against the reference executor, estimate time and energy.

    What a run measures goes in columns of its own: an attached board's DWT ``cycles`` with the
    ``ms`` and ``energy_uwh`` they give at the board's clock, QEMU's ``instructions``, the host's
    ``host_wall_ms``. Estimates of the Cortex-M4 timing model (Unicorn) are ``est_cycles``,
    ``est_ms`` and ``est_energy_uwh`` at the board's clock (48 MHz, as in the paper). A real board
    that is not attached is not run: its row keeps its own ROM, and the cycle estimate and stack
    high-water mark come from ``emulated_elf``, the qemu-m4 build of the same generated code.
    """
    from microai.quant import reference
    from microai.quant.compare import matching_vectors

    def check(outputs: np.ndarray) -> float:
        graph, x = _test_vectors(graph_path, prepared_npz, len(outputs))
        return float(matching_vectors(graph, outputs, reference.run(graph, x)).mean())

    result = measure_board(board_name, board_cfg, build_json, flash_json, timeout, emulated_elf, check)
    write_json(out_json, result)
    return result
