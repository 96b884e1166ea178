"""End to end on the emulated board: build, run on QEMU, read the UART, check against numpy."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_deploy_support import needs_qemu, standin_reference, standin_vectors, write_standin

from microai.deploy import qemu
from microai.deploy.boards import get_board
from microai.deploy.boards.serial_board import SerialBoard
from microai.deploy.errors import BoardUnavailable, DeployError, FirmwareFault, RunTimeout
from microai.deploy.qemu import QemuSocket, free_port, ticks_to_instructions

pytestmark = needs_qemu


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_outputs_equal_numpy_bit_for_bit(tmp_path: Path, dtype: type) -> None:
    x = standin_vectors(np.dtype(dtype), n=4)
    board = get_board("qemu-m4")
    build = board.build(write_standin(tmp_path / "lib", dtype), x, tmp_path / "out")
    result = board.run(build, timeout=20)
    expected = standin_reference(x)
    assert result.outputs.dtype == expected.dtype
    np.testing.assert_array_equal(result.outputs.view(np.uint8), expected.view(np.uint8))
    assert result.how_measured == "instructions (QEMU icount)"
    # the same code on every vector (no data-dependent branches except the ReLU)
    assert 50 < result.cycles.min() <= result.cycles.max() < 1000
    assert 0 < result.stack_bytes_used < board.stack_bytes
    assert build.vector_bytes == x.nbytes
    assert build.rom_bytes == build.text + build.data - build.vector_bytes
    assert build.ram_bytes >= board.stack_bytes


def test_icount_conversion() -> None:
    # shift=7: 128 ns per instruction, 40 ns per 25 MHz tick -> 3.2 ticks per instruction
    assert ticks_to_instructions(320, 7) == 100
    assert ticks_to_instructions(1, 0) == 40


def test_fault_reports_status_registers_and_pc(tmp_path: Path) -> None:
    lib = write_standin(tmp_path / "lib", body="(void)*(volatile uint32_t *)0x30000000u;")
    board = get_board("qemu-m4")
    build = board.build(lib, standin_vectors(np.dtype(np.int16)), tmp_path / "out")
    with pytest.raises(FirmwareFault, match=r"HardFault.*PC in cnn\+0x") as err:
        board.run(build, timeout=20)
    regs = err.value.registers
    assert regs["BFAR"] == 0x30000000
    assert regs["CFSR"] & (1 << 15)  # BFARVALID
    assert regs["HFSR"] & (1 << 30)  # FORCED: the BusFault escalated


def test_hang_times_out_with_the_last_line(tmp_path: Path) -> None:
    lib = write_standin(tmp_path / "lib", body="for (;;) { __asm volatile(\"\"); }")
    board = get_board("qemu-m4")
    build = board.build(lib, standin_vectors(np.dtype(np.int16)), tmp_path / "out")
    with pytest.raises(RunTimeout, match=r"QEMU serial socket://127\.0\.0\.1:\d+ .*last line read: 'MICROAI"):
        board.run(build, timeout=1.5)


def test_lockup_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """A fault while stacking (SP pointing to no memory) cannot escalate: QEMU aborts with Lockup."""
    bad_stack = '__asm volatile("mov sp, %0\\n\\tpush {r0}" :: "r"(0x30000000u));'
    lib = write_standin(tmp_path / "lib", body=bad_stack)
    board = get_board("qemu-m4")
    build = board.build(lib, standin_vectors(np.dtype(np.int16)), tmp_path / "out")
    with pytest.raises(DeployError, match=r"QEMU aborted with code (-6|134): qemu: fatal: Lockup"):
        board.run(build, timeout=20)


def test_real_board_reader_against_the_emulated_uart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The nucleo's run path (open port, flash+reset, read) with QEMU's TCP serial as its port."""
    x = standin_vectors(np.dtype(np.int16), n=2)
    qemu = get_board("qemu-m4")
    build = qemu.build(write_standin(tmp_path / "lib"), x, tmp_path / "out")
    port = free_port()
    proc = subprocess.Popen(["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                             "-icount", "shift=7", "-no-reboot", "-serial",
                             f"tcp:127.0.0.1:{port},server=on,wait=on", "-kernel", str(build.elf)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nucleo = get_board("nucleo-l452re-p", port=f"socket://127.0.0.1:{port}")
        assert isinstance(nucleo, SerialBoard)
        flashed = []
        monkeypatch.setattr(nucleo, "_program", lambda elf, reset: flashed.append((elf, reset)))
        for _ in range(100):  # QEMU needs a moment to listen
            try:
                result = nucleo.run(build, timeout=20)
                break
            except BoardUnavailable:  # connection refused until QEMU listens
                time.sleep(0.05)
        else:
            pytest.fail("QEMU never listened")
    finally:
        proc.wait(timeout=10)
    assert flashed == [(build.elf, True)]
    np.testing.assert_array_equal(result.outputs, standin_reference(x))
    assert result.how_measured.startswith("cycles (DWT CYCCNT")


class _SlowOpen(QemuSocket):
    """Data arrives while open() is still running (as when a fast guest prints at once)."""

    def _reconfigure_port(self) -> None:
        time.sleep(0.3)
        super()._reconfigure_port()


def test_output_printed_while_the_port_opens_is_kept() -> None:
    """pyserial's socket port flushes its input at the end of open(); QemuSocket must not."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"MICROAI 1\nEND\n")

        thread = threading.Thread(target=serve)
        thread.start()
        with _SlowOpen(f"socket://127.0.0.1:{port}", timeout=2) as handle:
            assert handle.readline() == b"MICROAI 1\n"
        thread.join()


def test_a_port_taken_before_qemu_binds_it_is_replaced(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """free_port() closes its socket before QEMU binds: another process may take the port meanwhile."""
    board = get_board("qemu-m4")
    build = board.build(write_standin(tmp_path / "lib", np.int16), standin_vectors(np.dtype(np.int16), n=2),
                        tmp_path / "out")
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        ports = iter([squatter.getsockname()[1]])
        monkeypatch.setattr(qemu, "free_port", lambda: next(ports, None) or free_port())
        assert board.run(build, timeout=20).outputs.shape[0] == 2
