"""Parser and reader of the harness's UART line protocol (firmware/main.c).

Lines before the ``MICROAI`` header are ignored (boot loaders print banners); after it,
every line must be a vector line, the stack, arena or log line or the ``END`` sentinel. A ``FAULT``
line anywhere raises :class:`FirmwareFault`; ``END error`` raises :class:`FirmwareError` quoting
the ``LOG`` lines (the model runtime's own messages, e.g. TFLM's "Arena size is too small ...").
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from microai.deploy.errors import FirmwareError, FirmwareFault, ProtocolError, RunTimeout

PROTOCOL_VERSION = "v1"
DTYPES = {"f32": np.dtype(np.float32), "i8": np.dtype(np.int8), "i16": np.dtype(np.int16)}

_HEADER = re.compile(r"MICROAI (?P<version>\S+) board=(?P<board>\S+) vectors=(?P<n>\d+) "
                     r"outputs=(?P<k>\d+) dtype=(?P<dtype>\S+)")
_FAULT = re.compile(r"FAULT (?P<kind>\w+)(?P<regs>( \w+=0x[0-9a-fA-F]+)*)")


@dataclass(frozen=True)
class Report:
    """Everything one run printed. ``ticks`` are raw board counter deltas (board units);
    ``arena_bytes`` is (used, size) of the runtime's tensor arena when it printed one."""

    board: str
    outputs: np.ndarray
    ticks: np.ndarray
    stack_bytes: int | None
    arena_bytes: tuple[int, int] | None = None
    log: tuple[str, ...] = ()


class LineSource(Protocol):
    """What the reader needs from a port: pyserial's ``readline`` (returns b"" on timeout)."""

    def readline(self) -> bytes: ...


class ProtocolParser:
    """Feed lines one by one; :meth:`feed` returns True once the END sentinel was read."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.last_line = ""
        self._board: str | None = None
        self._n = self._k = 0
        self._dtype = DTYPES["f32"]
        self._outputs: list[np.ndarray] = []
        self._ticks: list[int] = []
        self._stack: int | None = None
        self._arena: tuple[int, int] | None = None
        self._log: list[str] = []
        self._done = False

    def feed(self, raw: bytes | str) -> bool:
        line = self._decode(raw).strip()
        if not line:
            return self._done
        self.last_line = line
        if self._done:
            raise self._error(f"data after END: {line!r}")
        if line.startswith("FAULT"):
            raise self._fault(line)
        if self._board is None:
            if line.startswith("MICROAI"):
                self._header(line)
            return False
        kind, _, rest = line.partition(" ")
        if kind == "V":
            self._vector(rest)
        elif kind == "STACK" and rest.isdigit():
            self._stack = int(rest)
        elif kind == "ARENA" and re.fullmatch(r"\d+ \d+", rest):
            used, size = rest.split()
            self._arena = (int(used), int(size))
        elif kind == "LOG":
            self._log.append(rest)
        elif kind == "END":
            self._end(rest)
        else:
            raise self._error(f"unexpected line {line!r} after {len(self._ticks)} of {self._n} vectors")
        return self._done

    def report(self) -> Report:
        if not self._done or self._board is None:
            raise self._error(f"no END line; last line read: {self.last_line!r}")
        outputs = np.stack(self._outputs) if self._outputs else np.zeros((0, self._k), self._dtype)
        return Report(self._board, outputs, np.asarray(self._ticks, dtype=np.int64), self._stack,
                      self._arena, tuple(self._log))

    # ----------------------------------------------------------------- lines
    def _decode(self, raw: bytes | str) -> str:
        if isinstance(raw, str):
            return raw
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise self._error(f"garbage (not ASCII) on the line: {raw[:80]!r}") from None

    def _header(self, line: str) -> None:
        m = _HEADER.fullmatch(line)
        if m is None:
            raise self._error(f"malformed header {line!r}")
        if m["version"] != PROTOCOL_VERSION:
            raise self._error(f"protocol {m['version']}, this reader speaks {PROTOCOL_VERSION}")
        if m["dtype"] not in DTYPES:
            raise self._error(f"unknown dtype {m['dtype']!r} in header; known: {sorted(DTYPES)}")
        self._board, self._n, self._k = m["board"], int(m["n"]), int(m["k"])
        self._dtype = DTYPES[m["dtype"]]

    def _vector(self, rest: str) -> None:
        fields = rest.split(" ")
        index = len(self._ticks)
        if len(fields) != 2 + self._k:
            raise self._error(f"vector line {index} has {len(fields) - 2} outputs, header says {self._k}")
        try:
            i, ticks = int(fields[0]), int(fields[1])
            if self._dtype == np.float32:
                bits = np.array([int(f, 16) for f in fields[2:]], dtype=np.uint32)
                values = bits.view(np.float32)
            else:
                values = np.array([int(f) for f in fields[2:]], dtype=np.int64)
        except ValueError:
            raise self._error(f"unparsable vector line 'V {rest}'") from None
        if i != index:
            raise self._error(f"vector line {i} out of order, expected {index}")
        if index >= self._n:
            raise self._error(f"more vector lines than the {self._n} announced")
        if self._dtype != np.float32:
            info = np.iinfo(self._dtype)
            if values.min(initial=0) < info.min or values.max(initial=0) > info.max:
                raise self._error(f"vector line {i}: value outside {self._dtype}")
        self._outputs.append(values.astype(self._dtype))
        self._ticks.append(ticks)

    def _end(self, status: str) -> None:
        if status != "ok":
            logged = f"; it logged: {' | '.join(self._log)}" if self._log else ""
            raise FirmwareError(f"{self.source}: firmware ended with status {status!r}{logged}")
        if len(self._ticks) != self._n:
            raise self._error(f"END after {len(self._ticks)} of {self._n} vectors")
        self._done = True

    def _error(self, what: str) -> ProtocolError:
        return ProtocolError(f"{self.source}: {what}")

    def _fault(self, line: str) -> FirmwareFault:
        m = _FAULT.fullmatch(line)
        if m is None:
            return FirmwareFault(f"{self.source}: malformed fault report {line!r}", "unknown", {})
        regs = {k: int(v, 16) for k, v in (f.split("=") for f in m["regs"].split())}
        detail = " ".join(f"{k}=0x{v:08x}" for k, v in regs.items())
        return FirmwareFault(f"{self.source}: firmware {m['kind']}: {detail}", m["kind"], regs)


def parse_lines(lines: Iterable[bytes | str], source: str) -> Report:
    """Parse a complete capture (host stdout, a log file)."""
    parser = ProtocolParser(source)
    for line in lines:
        parser.feed(line)
    return parser.report()


def read_report(port: LineSource, source: str, timeout: float) -> Report:
    """Read lines from ``port`` until END; raise :class:`RunTimeout` after ``timeout`` seconds."""
    parser = ProtocolParser(source)
    deadline = time.monotonic() + timeout
    pending = b""
    while time.monotonic() < deadline:
        pending += port.readline()  # a read timeout can return part of a line
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if parser.feed(line):
                return parser.report()
    if pending:
        parser.last_line = pending.decode("ascii", "replace")
    raise RunTimeout(f"{source}: no END line within {timeout:g} s; last line read: {parser.last_line!r}")
