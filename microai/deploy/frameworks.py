"""Third-party deployment frameworks the paper compares against, and why each cannot run here.

MicroAI's own generator is always available. TFLite Micro needs its source tree (and TensorFlow
to convert the model); STM32Cube.AI needs ST's proprietary CLI. When a prerequisite is missing,
the results table says "unavailable: <reason>" instead of a number.
"""

from __future__ import annotations

import os
import shutil

#: Boards each third-party framework targets in the paper.
FRAMEWORK_BOARDS = {"tflite-micro": ("sparkfun-edge", "nucleo-l452re-p"), "stm32cubeai": ("nucleo-l452re-p",)}


def unavailable_reason(framework: str) -> str:
    """Why ``framework`` cannot produce measurements on this machine."""
    if framework == "tflite-micro":
        if not os.environ.get("TFLM_ROOT"):
            return "no TensorFlow Lite Micro source tree (TFLM_ROOT is not set)"
        return "TFLite Micro backend not integrated yet (TFLM_ROOT found)"
    if framework == "stm32cubeai":
        if not (shutil.which("stedgeai") or shutil.which("stm32ai")):
            return "STM32Cube.AI CLI (stedgeai / stm32ai, proprietary) is not installed"
        return "STM32Cube.AI backend not integrated yet (CLI found)"
    raise ValueError(f"unknown framework '{framework}'; known: microai, {', '.join(FRAMEWORK_BOARDS)}")


def unavailable_rows(frameworks: list[str], boards: list[str]) -> dict[tuple[str, str], str]:
    """(framework, board) -> reason for every swept third-party framework on its swept boards."""
    return {
        (fw, board): unavailable_reason(fw)
        for fw in frameworks if fw != "microai"
        for board in FRAMEWORK_BOARDS[fw] if board in boards
    }
