"""Inference frameworks a results table compares, and why the ones MicroAI cannot run are missing.

Only ``microai`` (this project's code generator) is built and measured. TFLite Micro and
STM32Cube.AI rows carry "unavailable: <reason>" instead of numbers: no table cell is faked.
"""

from __future__ import annotations

import shutil

from microai.deploy.boards import BOARDS

FRAMEWORKS = ("microai", "tflite-micro", "stm32cubeai")
STM32CUBEAI_CLI = "stm32ai"
STM32_BOARDS = frozenset({"nucleo-l452re-p"})


def unavailable_reason(framework: str, board: str) -> str | None:
    """Why ``framework`` cannot produce numbers on ``board`` here, or None if it can."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework '{framework}'; known: {list(FRAMEWORKS)}")
    if board not in BOARDS:
        raise ValueError(f"unknown board '{board}'; known: {sorted(BOARDS)}")
    if framework == "microai":
        return None
    if framework == "tflite-micro":
        return ("TFLite Micro backend not integrated (needs a tflite-micro source tree and a TFLite "
                "converter, neither shipped with MicroAI)")
    if board not in STM32_BOARDS:
        return f"STM32Cube.AI generates code for STM32 parts only, not {board}"
    if shutil.which(STM32CUBEAI_CLI) is None:
        return f"STM32Cube.AI CLI ({STM32CUBEAI_CLI}) not installed (proprietary, not redistributable)"
    return "STM32Cube.AI backend not integrated (CLI found, no build rule for its output)"


def unavailable_rows(frameworks: list[str], boards: list[str]) -> dict[tuple[str, str], str]:
    """``{(framework, board): reason}`` for every pair that yields no measurement."""
    reasons = {(f, b): unavailable_reason(f, b) for f in frameworks for b in boards}
    return {pair: reason for pair, reason in reasons.items() if reason is not None}
