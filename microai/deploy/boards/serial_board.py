"""Real boards: flashed with pyocd over SWD, read back over their serial port with pyserial."""

from __future__ import annotations

from pathlib import Path

from microai.deploy.boards.base import BuildResult, CortexMBoard, RunResult, elf_of, locate_fault
from microai.deploy.errors import BoardUnavailable, DeployError, FirmwareFault
from microai.deploy.protocol import read_report


class SerialBoard(CortexMBoard):
    """A Cortex-M4F board at 48 MHz whose cycles come from DWT->CYCCNT.

    ``port`` is any pyserial URL or device (``/dev/ttyACM0``, ``socket://host:port``);
    ``probe`` selects a debug probe by unique id when several are connected.
    """

    physical = True
    pyocd_target: str
    baudrate = 115200

    def __init__(self, port: str | None = None, probe: str | None = None, stack_bytes: int = 8192) -> None:
        super().__init__(stack_bytes)
        self.port = port
        self.probe = probe

    def flash(self, elf: Path) -> None:
        self._program(elf_of(elf), reset=False)

    def _program(self, elf: Path, reset: bool) -> None:
        try:
            from pyocd.core.helpers import ConnectHelper
            from pyocd.flash.file_programmer import FileProgrammer
        except ImportError as e:
            raise BoardUnavailable(f"{self.name}: pyocd is not installed") from e
        session = ConnectHelper.session_with_chosen_probe(
            unique_id=self.probe, target_override=self.pyocd_target, blocking=False, auto_open=True)
        if session is None:
            raise BoardUnavailable(f"{self.name}: no debug probe found (pyocd target {self.pyocd_target}"
                                   f"{', probe ' + self.probe if self.probe else ''})")
        try:
            with session:
                FileProgrammer(session).program(str(elf), file_format="elf")
                if reset:
                    session.target.reset()
        except Exception as e:  # pyocd raises many types: name the board and image
            raise DeployError(f"{self.name}: flashing {elf} with pyocd failed: {e}") from e

    def run(self, target: Path | BuildResult, timeout: float = 60.0) -> RunResult:
        """Open the serial port, flash and reset, then read the report the firmware prints."""
        import serial

        elf = elf_of(target)
        if self.port is None:
            raise BoardUnavailable(f"{self.name}: no serial port configured (e.g. port='/dev/ttyACM0')")
        try:
            handle = serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=0.2)
        except serial.SerialException as e:
            raise BoardUnavailable(f"{self.name}: cannot open serial port {self.port}: {e}") from e
        with handle:
            handle.reset_input_buffer()
            self._program(elf, reset=True)
            try:
                return self.read(handle, timeout)
            except FirmwareFault as fault:
                raise locate_fault(fault, elf) from None

    def read(self, port: serial.SerialBase, timeout: float) -> RunResult:  # noqa: F821 - lazy import
        """Read one run's report from an open port (also used against QEMU's emulated UART in tests)."""
        report = read_report(port, f"{self.name} serial {getattr(port, 'name', None) or self.port}", timeout)
        return RunResult(self.name, report.outputs, report.ticks, report.stack_bytes,
                         "cycles (DWT CYCCNT at 48 MHz, measured on board)", report.arena_bytes)
