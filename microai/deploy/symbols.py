"""Function symbols of an ELF image: which function an address (a fault PC, a code block) is in."""

from __future__ import annotations

import bisect
from pathlib import Path

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection


class FunctionMap:
    """Address -> name of the function containing it (only functions whose name has ``prefix``)."""

    def __init__(self, elf: Path, prefix: str = "") -> None:
        spans = []
        with elf.open("rb") as f:
            for sec in ELFFile(f).iter_sections():
                if not isinstance(sec, SymbolTableSection):
                    continue
                for sym in sec.iter_symbols():
                    if sym["st_info"]["type"] == "STT_FUNC" and sym.name.startswith(prefix):
                        start = sym["st_value"] & ~1  # Thumb bit
                        spans.append((start, start + max(sym["st_size"], 1), sym.name))
        spans.sort()
        self._starts = [s[0] for s in spans]
        self._spans = spans

    def lookup(self, address: int) -> tuple[str, int] | None:
        """(function, offset) or None when no function covers ``address``."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self._spans[i][1]:
            return self._spans[i][2], address - self._spans[i][0]
        return None

    def describe(self, address: int) -> str:
        hit = self.lookup(address)
        return f"{hit[0]}+0x{hit[1]:x}" if hit else "no function"


def symbol_span(elf: Path, name: str) -> tuple[int, int] | None:
    """(address, size in bytes) of a symbol (function or data) the ELF defines, or None."""
    with elf.open("rb") as f:
        for sec in ELFFile(f).iter_sections():
            if isinstance(sec, SymbolTableSection):
                for sym in sec.get_symbol_by_name(name) or ():
                    if sym["st_shndx"] != "SHN_UNDEF":
                        return sym["st_value"], sym["st_size"]
    return None
