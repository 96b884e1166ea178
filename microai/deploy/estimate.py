"""Cycle estimate of a qemu-m4 firmware image in Unicorn with the Cortex-M4 timing model.

The image runs exactly as on QEMU: the harness's UART, its counter and the AIRCR exit are
modelled with MMIO callbacks. A block hook counts executions per translation block (the block's
cost is computed once, see :mod:`microai.deploy.timing`); each read of the counter snapshots the
totals, so per-vector numbers cover the same instructions as QEMU's icount measurement.
Blocks are attributed to the ``layer_*`` function containing them; a block of another function that runs
after a layer's code and before the model entry ``cnn`` runs again (a helper the layer called: a shared
block kernel, memset) counts for that layer. In a TFLM image, blocks are attributed to the operator
whose kernel is running: the TFLM adapter publishes each operator's invoke function in
``microai_tflm_operators`` (firmware/tflm/tflm_adapter.cc), and everything run between entering that
function and returning to its caller is the operator's, labelled "<index> <OPERATOR>" in execution
order. Everything else is "other".
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile
from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_MODE_MCLASS, UC_MODE_THUMB, Uc, UcError
from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_PC, UC_ARM_REG_SP, UC_CPU_ARM_CORTEX_M4

from microai.deploy.errors import DeployError, RunTimeout
from microai.deploy.protocol import parse_lines
from microai.deploy.symbols import FunctionMap, symbol_span
from microai.deploy.timing import BlockCost, BlockCoster, TimingModel
from microai.deploy.toolchain import FIRMWARE, memory_regions

LAYER_PREFIX = "layer_"
ENTRY = "cnn"  # the generated model's entry point: code between two layer calls
OTHER = "other"
PERIPHERALS = (0x40000000, 0x30000)  # CMSDK timers, UART0 and FPGAIO of mps2-an386
UART0_DATA, UART0_STATE = 0x4000, 0x4004
FPGAIO_COUNTER = 0x28018
SCS = (0xE000E000, 0x1000)
AIRCR = 0xD0C
TFLM_OPERATORS = "microai_tflm_operators"  # {invoke, name} per operator, see firmware/tflm
_CONTEXT_SHIFT = 44  # block keys: (operator context << 44) | (address << 12) | size


@dataclass(frozen=True)
class Estimate:
    """Per-vector estimated ``cycles`` and ``instructions``; ``layer_cycles[i]`` maps layer -> cycles."""

    outputs: np.ndarray
    cycles: np.ndarray
    instructions: np.ndarray
    layer_cycles: list[dict[str, int]]
    layer_instructions: list[dict[str, int]]
    assumptions: str
    instructions_per_second: float  # speed of the estimator itself
    stack_bytes_used: int | None  # the harness's stack high-water mark, as it reported it
    arena_bytes: tuple[int, int] | None  # (used, reserved) tensor arena of a TFLM image, as it reported it


def _page_round(n: int) -> int:
    return (n + 0xFFF) & ~0xFFF


class _OperatorTable:
    """The TFLM adapter's operator table in RAM: {invoke, name} pairs, read once the adapter filled it."""

    def __init__(self, address: int, size: int) -> None:
        self.address, self.size = address, size

    @classmethod
    def of(cls, elf: Path) -> _OperatorTable | None:
        span = symbol_span(elf, TFLM_OPERATORS)
        return cls(*span) if span else None

    def read(self, uc: Uc) -> list[tuple[int, str]]:
        """(invoke function address, "<index> <OPERATOR>") per operator in execution order."""
        words = struct.unpack(f"<{self.size // 4}I", bytes(uc.mem_read(self.address, self.size)))
        return [(invoke & ~1, f"{i:02d} {_c_string(uc, name)}")
                for i, (invoke, name) in enumerate(zip(words[::2], words[1::2], strict=True))]


def _c_string(uc: Uc, address: int, limit: int = 64) -> str:
    return bytes(uc.mem_read(address, limit)).split(b"\0", 1)[0].decode("ascii", "replace")


class _Run:
    """State of one emulation: block table, counters, UART capture and counter snapshots.

    With a TFLM operator table, ``context`` is the running operator (0: none): blocks are counted
    per (operator, block), and ``expect`` / ``return_to`` are the addresses that switch operators.
    """

    def __init__(self, uc: Uc, coster: BlockCoster, max_instructions: int,
                 operators: _OperatorTable | None = None) -> None:
        self.uc = uc
        self.coster = coster
        self.max_instructions = max_instructions
        self.blocks: dict[int, BlockCost] = {}
        self.called: dict[tuple[int, str], BlockCost] = {}  # helper blocks, per calling layer
        self.caller: str | None = None
        self.uart = bytearray()
        self.snapshots: list[tuple[dict[str, int], dict[str, int]]] = []
        self.exited = False
        self.over_budget = False
        self.instructions = 0
        self.previous: BlockCost | None = None
        self.previous_end = -1
        self.operator_table = operators
        self.operators: list[tuple[int, str]] = []
        self.next_operator = 0
        self.context = 0
        self.expect = self.return_to = -1

    def on_block(self, uc: Uc, address: int, size: int, _: object) -> None:
        if address == self.expect:
            self._enter_operator(uc)
        elif address == self.return_to:
            self.context, self.return_to = 0, -1
        key = self.context | (address << 12) | size
        block = self.blocks.get(key)
        if block is None:
            block = self.blocks[key] = self._new_block(uc, address, size)
        if block.layer == OTHER:
            if self.caller is not None:
                block = self._called(key, block)
        elif not self.context:
            self.caller = None if block.layer == ENTRY else block.layer
        block.hits += 1
        previous = self.previous
        if address == self.previous_end:
            if (previous.tail_load_store and block.head_load_store
                    and not previous.tail_writes & block.head_address):
                block.pipelined += 1
        elif previous is not None and previous.ends_in_branch:
            previous.taken += 1
        self.previous = block
        self.previous_end = address + size
        self.instructions += block.instructions
        if self.instructions > self.max_instructions:
            self.over_budget = True
            uc.emu_stop()

    def _new_block(self, uc: Uc, address: int, size: int) -> BlockCost:
        static = self.blocks.get((address << 12) | size)
        if static is None:
            static = self.blocks[(address << 12) | size] = self.coster.cost(bytes(uc.mem_read(address, size)),
                                                                             address)
        if not self.context:
            return static
        label = self.operators[(self.context >> _CONTEXT_SHIFT) - 1][1]
        return replace(static, layer=label, hits=0, pipelined=0, taken=0)

    def _enter_operator(self, uc: Uc) -> None:
        index = self.next_operator
        self.context = (index + 1) << _CONTEXT_SHIFT
        self.return_to = uc.reg_read(UC_ARM_REG_LR) & ~1
        self.next_operator = (index + 1) % len(self.operators)
        self.expect = self.operators[self.next_operator][0]

    def _called(self, key: int, block: BlockCost) -> BlockCost:
        """The copy of a helper's block that counts for the calling layer."""
        copy = self.called.get((key, self.caller))
        if copy is None:
            copy = self.called[(key, self.caller)] = replace(block, layer=self.caller, hits=0, pipelined=0,
                                                             taken=0)
        return copy

    def totals(self) -> tuple[dict[str, int], dict[str, int]]:
        cycles: dict[str, int] = {}
        instructions: dict[str, int] = {}
        model = self.coster.model
        for b in (*self.blocks.values(), *self.called.values()):
            layer = OTHER if b.layer == ENTRY else b.layer
            cycles[layer] = cycles.get(layer, 0) + b.total(model)
            instructions[layer] = instructions.get(layer, 0) + b.hits * b.instructions
        return cycles, instructions

    def on_peripheral_read(self, uc: Uc, offset: int, size: int, _: object) -> int:
        if offset == FPGAIO_COUNTER:
            if self.operator_table is not None and not self.operators:  # set-up done: the table is filled
                self.operators = self.operator_table.read(uc)
                self.expect = self.operators[0][0] if self.operators else -1
            cycles, instructions = self.totals()
            self.snapshots.append((cycles, instructions))
            return sum(cycles.values()) & 0xFFFFFFFF
        return 0  # UART STATE: never full; other registers read as zero

    def on_peripheral_write(self, uc: Uc, offset: int, size: int, value: int, _: object) -> None:
        if offset == UART0_DATA:
            self.uart.append(value & 0xFF)

    def on_scs_read(self, uc: Uc, offset: int, size: int, _: object) -> int:
        return 0

    def on_scs_write(self, uc: Uc, offset: int, size: int, value: int, _: object) -> None:
        if offset == AIRCR and (value >> 16) == 0x05FA and value & 0x4:
            self.exited = True
            uc.emu_stop()


def estimate(elf_path: Path, model: TimingModel | None = None, max_instructions: int = 2_000_000_000,
             timeout: float | None = None) -> Estimate:
    """Run a ``qemu-m4`` image to its exit and estimate Cortex-M4 cycles per vector and per layer.

    ``timeout`` bounds the wall-clock time of the emulation (seconds), ``max_instructions`` its length.
    """
    model = model or TimingModel()
    with elf_path.open("rb") as f:
        segments = [(s["p_paddr"], s.data()) for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"]
    functions = FunctionMap(elf_path)
    operators = _OperatorTable.of(elf_path)

    def layer_of(address: int) -> str:
        hit = functions.lookup(address)
        return hit[0] if hit and (hit[0].startswith(LAYER_PREFIX) or hit[0] == ENTRY) else OTHER
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M4)
    for origin, length in memory_regions(FIRMWARE / "boards" / "qemu-m4" / "linker.ld").values():
        uc.mem_map(origin, _page_round(length))
    for address, data in segments:
        try:
            uc.mem_write(address, data)
        except UcError as e:
            raise DeployError(f"{elf_path}: segment at 0x{address:08x} is outside the qemu-m4 "
                              "memory map") from e
    run = _Run(uc, BlockCoster(model, layer_of), max_instructions, operators)
    uc.mmio_map(*PERIPHERALS, run.on_peripheral_read, None, run.on_peripheral_write, None)
    uc.mmio_map(*SCS, run.on_scs_read, None, run.on_scs_write, None)
    uc.hook_add(UC_HOOK_BLOCK, run.on_block)
    stack, entry = struct.unpack("<II", bytes(uc.mem_read(0, 8)))
    uc.reg_write(UC_ARM_REG_SP, stack)  # from the vector table, as a reset does
    started = time.perf_counter()
    try:
        uc.emu_start(entry | 1, 0xFFFFFFFF, timeout=int(timeout * 1e6) if timeout else 0)
    except UcError as e:
        pc = uc.reg_read(UC_ARM_REG_PC)
        where = FunctionMap(elf_path).describe(pc)
        raise DeployError(f"{elf_path}: emulation stopped at PC=0x{pc:08x} ({where}): {e}; "
                          f"UART so far: {bytes(run.uart[-200:])!r}") from e
    elapsed = time.perf_counter() - started
    source = f"Unicorn estimate of {elf_path}"
    if run.over_budget:
        raise RunTimeout(f"{source}: more than {max_instructions} instructions without exit")
    if not run.exited:
        if timeout and elapsed >= timeout:
            raise RunTimeout(f"{source}: no exit within {timeout:g} s ({run.instructions} instructions run)")
        raise DeployError(f"{source}: emulation ended without the AIRCR exit")
    report = parse_lines(bytes(run.uart).splitlines(), source)
    n = len(report.ticks)
    if len(run.snapshots) != 2 * n:
        raise DeployError(f"{source}: {len(run.snapshots)} counter reads for {n} vectors, expected {2 * n}")
    layer_cycles, layer_instructions = [], []
    for i in range(n):
        (c0, i0), (c1, i1) = run.snapshots[2 * i], run.snapshots[2 * i + 1]
        layer_cycles.append({k: v - c0.get(k, 0) for k, v in c1.items() if v != c0.get(k, 0)})
        layer_instructions.append({k: v - i0.get(k, 0) for k, v in i1.items() if v != i0.get(k, 0)})
    return Estimate(
        outputs=report.outputs,
        cycles=np.array([sum(d.values()) for d in layer_cycles], dtype=np.int64),
        instructions=np.array([sum(d.values()) for d in layer_instructions], dtype=np.int64),
        layer_cycles=layer_cycles,
        layer_instructions=layer_instructions,
        assumptions=model.describe(),
        instructions_per_second=run.instructions / elapsed if elapsed > 0 else float("inf"),
        stack_bytes_used=report.stack_bytes,
        arena_bytes=report.arena_bytes,
    )


@dataclass(frozen=True)
class InferenceEstimate:
    """Per-inference means over the image's vectors (what a results table needs)."""

    cycles_per_inference: float
    instructions_per_inference: float
    layer_cycles: dict[str, float]
    assumptions: str
    vectors: int
    stack_bytes_used: int | None
    arena_bytes: tuple[int, int] | None


def estimate_elf(elf_path: Path, timeout: float | None = None,
                 model: TimingModel | None = None) -> InferenceEstimate:
    """:func:`estimate`, averaged over the vectors embedded in the image."""
    est = estimate(Path(elf_path), model, timeout=timeout)
    n = len(est.cycles)
    layers = sorted({k for d in est.layer_cycles for k in d})
    return InferenceEstimate(
        cycles_per_inference=float(est.cycles.mean()),
        instructions_per_inference=float(est.instructions.mean()),
        layer_cycles={k: sum(d.get(k, 0) for d in est.layer_cycles) / n for k in layers},
        assumptions=est.assumptions,
        vectors=n,
        stack_bytes_used=est.stack_bytes_used,
        arena_bytes=est.arena_bytes,
    )
