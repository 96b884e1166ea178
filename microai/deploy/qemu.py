"""Running a Cortex-M4F image on QEMU's mps2-an386 with the UART on a TCP socket read by pyserial.

QEMU waits for the client before starting the guest (``server=on,wait=on``), so no output is
lost; ``-icount shift=N`` makes virtual time advance 2^N ns per instruction, which turns the
board's 25 MHz counter into an instruction counter (see firmware/boards/qemu-m4/board.c).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import time
from pathlib import Path

import serial
from serial.urlhandler import protocol_socket

from microai.deploy.errors import DeployError, ProtocolError, RunTimeout
from microai.deploy.protocol import Report, read_report
from microai.deploy.toolchain import require_tool

MACHINE = "mps2-an386"
COUNTER_HZ = 25_000_000  # FPGAIO / CMSDK timer clock of the MPS2 boards, in virtual time
QEMU_ABORT_EXITS = (-6, 134)  # SIGABRT (qemu: fatal: Lockup ...), seen directly or through a shell


def ticks_to_instructions(ticks: int, shift: int) -> int:
    """Counter ticks (25 MHz) -> instructions at 2^shift ns per instruction."""
    ns_per_tick = 1e9 / COUNTER_HZ
    return round(ticks * ns_per_tick / (1 << shift))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuSocket(protocol_socket.Serial):
    """pyserial's ``socket://`` port without the input flush at the end of ``open()``.

    QEMU starts the guest as soon as it accepts the connection, so a small model can print its whole
    report before ``open()`` returns; pyserial's flush would then discard it.
    """

    _opening = False

    def open(self) -> None:
        self._opening = True
        try:
            super().open()
        finally:
            self._opening = False

    def reset_input_buffer(self) -> None:
        if not self._opening:
            super().reset_input_buffer()


class _PortTaken(DeployError):
    """Another process bound the free port between free_port() and QEMU's bind."""


def _await_listening(proc: subprocess.Popen, url: str, deadline: float) -> None:
    """Wait for QEMU's "waiting for connection" line: connecting before it could reach another process
    that holds the same port. Raise if QEMU exits instead (``_PortTaken`` when the port was in use)."""
    fd = proc.stderr.fileno()  # type: ignore[union-attr]
    said = b""
    while b"waiting for connection" not in said:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunTimeout(f"QEMU serial {url} did not accept a connection; QEMU said: {said.decode()!r}")
        if not select.select([fd], [], [], remaining)[0]:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:  # end of stderr: QEMU exited
            proc.wait()
            text = said.decode(errors="replace").strip()
            error = _PortTaken if "Address already in use" in text else DeployError
            raise error(f"QEMU exited with {proc.returncode} before {url} accepted a connection: {text}")
        said += chunk


def _connect(url: str, proc: subprocess.Popen, deadline: float) -> serial.SerialBase:
    _await_listening(proc, url, deadline)
    try:
        return QemuSocket(url, timeout=0.2)
    except serial.SerialException as e:
        raise DeployError(f"QEMU serial {url}: cannot connect although QEMU is listening: {e}") from e


_Started = tuple[subprocess.Popen, serial.SerialBase, str]  # QEMU, the serial connection to it, its URL


def _launch(binary: str, elf: Path, shift: int) -> _Started:
    """QEMU on a free TCP port, and the open serial connection to it."""
    port = free_port()
    cmd = [binary, "-M", MACHINE, "-nographic", "-monitor", "none", "-icount", f"shift={shift}",
           "-no-reboot", "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on", "-kernel", str(elf)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    url = f"socket://127.0.0.1:{port}"
    try:
        return proc, _connect(url, proc, time.monotonic() + 10), url
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
        raise


def _start(binary: str, elf: Path, shift: int, attempts: int = 3) -> _Started:
    """_launch, again on a new port when another process took the free one before QEMU bound it."""
    for _ in range(attempts - 1):
        try:
            return _launch(binary, elf, shift)
        except _PortTaken:
            continue
    return _launch(binary, elf, shift)


def run_qemu(elf: Path, timeout: float, shift: int = 7, qemu: str = "qemu-system-arm") -> Report:
    """Run ``elf`` to its END line; raise on timeout, fault, garbage or a non-zero QEMU exit."""
    proc, port_handle, url = _start(require_tool(qemu), elf, shift)
    source = f"QEMU serial {url} ({elf.name})"
    try:
        with port_handle:
            try:
                report = read_report(port_handle, source, timeout)
            except serial.SerialException as e:  # QEMU closed the socket: it exited or locked up
                raise _exit_error(proc, source, f"serial connection lost ({e})") from e
            except ProtocolError as e:
                if proc.poll() not in (None, 0):
                    raise _exit_error(proc, source, str(e)) from e
                raise
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise RunTimeout(f"{source}: QEMU did not exit after the END line "
                             "(board_exit missing?)") from None
        if proc.returncode != 0:
            raise _exit_error(proc, source, "after END")
        return report
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _exit_error(proc: subprocess.Popen, source: str, what: str) -> DeployError:
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return DeployError(f"{source}: {what}; QEMU still running")
    stderr = proc.stderr.read() if proc.stderr else ""
    fatal = [line for line in stderr.splitlines() if "fatal" in line]
    detail = "; ".join(fatal) if fatal else stderr.strip()[-500:]
    kind = "aborted" if proc.returncode in QEMU_ABORT_EXITS else "exited"
    return DeployError(f"{source}: {what}; QEMU {kind} with code {proc.returncode}: {detail}")
