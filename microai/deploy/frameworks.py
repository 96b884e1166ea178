"""Inference frameworks a results table compares, and why the ones that cannot run here are missing.

``microai`` (this project's code generator) runs everywhere. ``tflite-micro`` runs on the host
(accuracy, arena) and on boards when the user names a TFLite Micro source tree
(``microai.tflite.tree``). STM32Cube.AI rows carry "unavailable: <reason>": no table cell is faked.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from microai.deploy.boards import BOARDS
from microai.deploy.boards.base import CortexMBoard
from microai.tflite.tree import NoTFLMTree, find_tree

FRAMEWORKS = ("microai", "tflite-micro", "stm32cubeai")
STM32CUBEAI_CLI = "stm32ai"
STM32_BOARDS = frozenset({"nucleo-l452re-p"})


def unavailable_reason(framework: str, board: str, params: Mapping[str, Any] | None = None,
                       environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``framework`` cannot produce board numbers on ``board`` here, or None if it can.

    ``params`` and ``environ`` name the TFLite Micro source tree (see ``microai.tflite.tree``).
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework '{framework}'; known: {list(FRAMEWORKS)}")
    if board not in BOARDS:
        raise ValueError(f"unknown board '{board}'; known: {sorted(BOARDS)}")
    if framework == "microai":
        return None
    if framework == "tflite-micro":
        if not issubclass(BOARDS[board], CortexMBoard):
            return f"TFLite Micro board builds target the Cortex-M boards, not {board}"
        try:
            find_tree(params or {}, environ)
        except NoTFLMTree as e:
            return str(e)
        return None
    if board not in STM32_BOARDS:
        return f"STM32Cube.AI generates code for STM32 parts only, not {board}"
    if shutil.which(STM32CUBEAI_CLI) is None:
        return f"STM32Cube.AI CLI ({STM32CUBEAI_CLI}) not installed (proprietary, not redistributable)"
    return "STM32Cube.AI backend not integrated (CLI found, no build rule for its output)"


def unavailable_rows(frameworks: list[str], boards: list[str], params: Mapping[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None) -> dict[tuple[str, str], str]:
    """``{(framework, board): reason}`` for every pair that yields no board measurement."""
    reasons = {(f, b): unavailable_reason(f, b, params, environ) for f in frameworks for b in boards}
    return {pair: reason for pair, reason in reasons.items() if reason is not None}
