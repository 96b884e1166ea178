"""The UART line protocol parser/reader: good reports, garbage, missing sentinel, faults."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from microai.deploy.errors import FirmwareFault, ProtocolError, RunTimeout
from microai.deploy.protocol import parse_lines, read_report

SOURCE = "test port"


def render(outputs: np.ndarray, ticks: list[int], stack: int | None = 120,
           board: str = "qemu-m4") -> list[str]:
    """The lines firmware/main.c prints for these outputs (floats as IEEE-754 bit patterns)."""
    dtype = {np.dtype(np.float32): "f32", np.dtype(np.int16): "i16", np.dtype(np.int8): "i8"}[outputs.dtype]
    lines = [f"MICROAI v1 board={board} vectors={len(outputs)} outputs={outputs.shape[1]} dtype={dtype}"]
    for i, (row, t) in enumerate(zip(outputs, ticks, strict=True)):
        values = [f"{v:08x}" for v in row.view(np.uint32)] if dtype == "f32" else [str(int(v)) for v in row]
        lines.append(" ".join(["V", str(i), str(t), *values]))
    if stack is not None:
        lines.append(f"STACK {stack}")
    return [*lines, "END ok"]


class FakePort:
    """pyserial-like: returns queued chunks, then b"" forever (a read timeout)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def readline(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6)),
              elements=st.floats(width=32, allow_nan=False)))
def test_float_outputs_round_trip_bit_for_bit(outputs: np.ndarray) -> None:
    ticks = list(range(100, 100 + len(outputs)))
    report = parse_lines(render(outputs, ticks), SOURCE)
    assert report.outputs.dtype == np.float32
    np.testing.assert_array_equal(report.outputs.view(np.uint32), outputs.view(np.uint32))
    assert report.ticks.tolist() == ticks and report.stack_bytes == 120 and report.board == "qemu-m4"


@settings(max_examples=40, deadline=None)
@given(arrays(np.int16, st.tuples(st.integers(1, 4), st.integers(1, 6))))
def test_int16_outputs_round_trip(outputs: np.ndarray) -> None:
    report = parse_lines(render(outputs, [7] * len(outputs), stack=None), SOURCE)
    assert report.outputs.dtype == np.int16 and report.stack_bytes is None
    np.testing.assert_array_equal(report.outputs, outputs)


def test_boot_noise_before_header_is_ignored_and_crlf_accepted() -> None:
    lines = ["\x00bootloader v2", *render(np.array([[1, -2]], np.int8), [5])]
    report = parse_lines([(line + "\r\n").encode() for line in lines], SOURCE)
    assert report.outputs.tolist() == [[1, -2]]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda ls: ls[:1] + ["V 0 5 1 2 3"] + ls[2:], "has 3 outputs, header says 2"),
    (lambda ls: ls[:1] + ["V 1 5 1 2"] + ls[2:], "out of order"),
    (lambda ls: ls[:1] + ["V 0 5 1 zz"] + ls[2:], "unparsable"),
    (lambda ls: ls[:1] + ["V 0 5 1 99999"] + ls[2:], "outside int16"),
    (lambda ls: ls[:1] + ["hello world"] + ls[1:], "unexpected line 'hello world'"),
    (lambda ls: ls[:1] + ls[-1:], "END after 0 of 1 vectors"),
    (lambda ls: ls[:-1] + ["END error"], "status 'error'"),
    (lambda ls: ["MICROAI v9 board=x vectors=1 outputs=2 dtype=i16"] + ls[1:], "protocol v9"),
    (lambda ls: ["MICROAI v1 board=x vectors=1 outputs=2 dtype=u64"] + ls[1:], "unknown dtype"),
    (lambda ls: ls + ["V 1 5 1 2"], "data after END"),
])
def test_malformed_reports_name_the_source(mutate, message: str) -> None:
    lines = mutate(render(np.array([[1, 2]], np.int16), [5]))
    with pytest.raises(ProtocolError, match=message) as err:
        parse_lines(lines, SOURCE)
    assert str(err.value).startswith(SOURCE)


def test_garbage_bytes_are_an_error() -> None:
    lines = [line.encode() for line in render(np.array([[1, 2]], np.int16), [5])]
    lines.insert(1, b"V 0 \xff\xfe\x80 garbage\n")
    with pytest.raises(ProtocolError, match="garbage"):
        parse_lines(lines, SOURCE)


def test_missing_sentinel_in_a_capture() -> None:
    with pytest.raises(ProtocolError, match="no END line; last line read: 'STACK 120'"):
        parse_lines(render(np.array([[1, 2]], np.int16), [5])[:-1], SOURCE)


def test_reader_times_out_naming_port_and_last_line() -> None:
    chunks = [(line + "\n").encode() for line in render(np.array([[1, 2]], np.int16), [5])[:-1]]
    with pytest.raises(RunTimeout, match=r"test port: no END line within 0.2 s; last line read: 'STACK 120'"):
        read_report(FakePort(chunks), SOURCE, timeout=0.2)


def test_reader_joins_lines_split_by_read_timeouts() -> None:
    text = "\n".join(render(np.array([[3, 4]], np.int16), [9])) + "\n"
    chunks = [text[i:i + 7].encode() for i in range(0, len(text), 7)]
    assert read_report(FakePort(chunks), SOURCE, timeout=5).outputs.tolist() == [[3, 4]]


def test_fault_line_raises_with_registers() -> None:
    lines = render(np.array([[1, 2]], np.int16), [5])[:1] + [
        "FAULT HardFault CFSR=0x00008200 HFSR=0x40000000 MMFAR=0x00000000 BFAR=0x30000000 PC=0x000001a2 "
        "LR=0x00000099"]
    with pytest.raises(FirmwareFault, match="HardFault") as err:
        parse_lines(lines, SOURCE)
    assert err.value.kind == "HardFault"
    assert err.value.registers["PC"] == 0x1A2 and err.value.registers["BFAR"] == 0x30000000
