"""Board registry: ``get_board("qemu-m4")``; each board is a folder in firmware/boards/ plus a class here."""

from __future__ import annotations

from typing import Any

from microai.deploy.boards.base import Board, BuildResult, RunResult
from microai.deploy.boards.host import Host
from microai.deploy.boards.nucleo_l452re_p import NucleoL452REP
from microai.deploy.boards.qemu_m4 import QemuM4
from microai.deploy.boards.sparkfun_edge import SparkfunEdge

BOARDS: dict[str, type[Board]] = {cls.name: cls for cls in (QemuM4, NucleoL452REP, SparkfunEdge, Host)}
DEFAULT_BOARD = QemuM4.name


def get_board(name: str = DEFAULT_BOARD, **options: Any) -> Board:
    """Instantiate a board by name; ``options`` go to its constructor (port=, probe=, stack_bytes=, ...)."""
    try:
        cls = BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board '{name}'; known boards: {sorted(BOARDS)}") from None
    return cls(**options)


__all__ = ["BOARDS", "DEFAULT_BOARD", "Board", "BuildResult", "RunResult", "get_board"]
