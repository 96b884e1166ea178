"""Exceptions of the deployment layer; every message names the board, file, port or limit involved."""

from __future__ import annotations


class DeployError(RuntimeError):
    """Base class: building, flashing or running firmware failed."""


class BuildError(DeployError):
    """The compiler or linker failed; the message carries the command and its diagnostics."""


class DoesNotFit(BuildError):
    """The firmware exceeds the board's flash or RAM (detected at link time)."""

    def __init__(self, board: str, needs: dict[str, int], has: dict[str, int]) -> None:
        self.board = board
        self.needs = needs
        self.has = has
        need = " / ".join(f"{_kib(needs[r])} {_label(r)}" for r in needs)
        have = " / ".join(f"{_kib(has[r])} {_label(r)}" for r in has)
        super().__init__(f"does not fit {board}: needs {need}, has {have}")


class ProtocolError(DeployError):
    """The firmware's line protocol was malformed, incomplete or cut short."""


class FirmwareError(ProtocolError):
    """The firmware ended its report with an error status (``END error``); the message quotes its log."""


class RunTimeout(DeployError):
    """No END line arrived in time (the firmware hangs or the port is silent)."""


class FirmwareFault(DeployError):
    """The firmware reported a CPU fault; ``registers`` holds CFSR, HFSR, PC, ... as integers."""

    def __init__(self, message: str, kind: str, registers: dict[str, int]) -> None:
        super().__init__(message)
        self.kind = kind
        self.registers = registers


class BoardUnavailable(DeployError):
    """A tool or device the board needs is missing (no QEMU, no probe, no serial port)."""


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _label(region: str) -> str:
    return "flash" if region == "FLASH" else region
