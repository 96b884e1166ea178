"""Cortex-M4 instruction timings (ARM Cortex-M4 TRM, "Processor instruction timings") per basic block.

Costs are computed once per block from capstone's disassembly; the two effects that depend on
execution order are left to the caller: a taken branch costs ``branch_refill`` extra cycles, and
a single load/store right after another one costs 1 cycle instead of 2 (address/data phase
pipelining), also across the boundary of two blocks that follow each other without a branch.
docs/estimator.md gives the TRM's wording behind each rule, and what the model leaves out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import capstone
from capstone import arm_const

BRANCHES = frozenset({"b", "bl", "bx", "blx", "cbz", "cbnz", "tbb", "tbh"})
SINGLE_LOAD_STORE = frozenset({
    "ldr", "ldrb", "ldrh", "ldrsb", "ldrsh", "ldrt", "ldrbt", "ldrht", "ldrsbt", "ldrsht", "ldrex", "ldrexb",
    "ldrexh", "str", "strb", "strh", "strt", "strbt", "strht", "strex", "strexb", "strexh",
})
MULTI_LOAD_STORE = frozenset({"ldm", "ldmdb", "stm", "stmdb", "push", "pop", "vldmia", "vldmdb", "vstmia",
                              "vstmdb", "vpush", "vpop"})
FIXED_COST = {
    "ldrd": 3, "strd": 3, "vldr": 2, "vstr": 2,
    "mla": 2, "mls": 2,
    "vmla": 3, "vmls": 3, "vnmla": 3, "vnmls": 3, "vfma": 3, "vfms": 3, "vfnma": 3, "vfnms": 3,
    "vdiv": 14, "vsqrt": 14,
}


@dataclass(frozen=True)
class TimingModel:
    """The assumptions of the estimate; ``describe()`` is printed next to every estimated number."""

    branch_refill: int = 2  # P of the TRM: 1-3 cycles to refill the pipeline after a taken branch
    divide: int = 7  # SDIV/UDIV take 2-12 cycles depending on the operands

    def describe(self) -> str:
        return ("Cortex-M4 TRM timings, zero flash wait states, "
                f"taken branch 1+{self.branch_refill}, SDIV/UDIV {self.divide}, "
                "LDR/STR 2 or 1 when pipelined after a load/store whose destination (or written-back base) "
                "is not its address, write-back costs nothing more, LDM/STM/PUSH/POP 1+N, "
                "VLDR/VSTR 2 (never pipelined), VLDM/VSTM 1+N, "
                "VMLA/VFMA 3, VDIV/VSQRT 14, no bus contention or cache effects")


@dataclass
class BlockCost:
    """Static cost of one translation block plus its execution counters (filled by the estimator)."""

    cycles: int  # with loads/stores pipelined inside the block, no branch refill
    instructions: int
    head_load_store: bool  # first instruction is a single load/store (can pipeline with the previous block)
    tail_load_store: bool
    ends_in_branch: bool  # last instruction may change the PC (then a non-sequential successor pays P)
    layer: str
    head_address: frozenset[int] = frozenset()  # registers the first instruction computes its address from
    tail_writes: frozenset[int] = frozenset()  # registers the last load writes (result, written-back base)
    hits: int = 0
    pipelined: int = 0  # entries where the head load/store pipelined with the previous block's tail
    taken: int = 0  # executions that left the block by a taken branch

    def total(self, model: TimingModel) -> int:
        return self.hits * self.cycles - self.pipelined + self.taken * model.branch_refill


def _writes_pc(insn: capstone.CsInsn) -> bool:
    """True for branches and for any instruction whose destination is the PC (pop {pc}, ldr pc, mov pc)."""
    name = insn.insn_name()
    if name in BRANCHES:
        return True
    regs = [op.reg for op in insn.operands if op.type == arm_const.ARM_OP_REG]
    if name in ("pop", "ldm", "ldmdb"):
        return arm_const.ARM_REG_PC in regs
    if name.startswith(("str", "stm", "push", "cmp", "cmn", "tst", "teq", "v")):
        return False
    return bool(regs) and regs[0] == arm_const.ARM_REG_PC


def _register_count(insn: capstone.CsInsn) -> int:
    """Words moved by a multiple load/store (double-precision registers count twice)."""
    regs = [op.reg for op in insn.operands if op.type == arm_const.ARM_OP_REG]
    if insn.insn_name() not in ("push", "pop", "vpush", "vpop"):
        regs = regs[1:]  # the first operand is the base register
    return max(1, sum(2 if insn.reg_name(r).startswith("d") else 1 for r in regs))


def instruction_cost(insn: capstone.CsInsn, model: TimingModel) -> int:
    """Cycles of one instruction with loads/stores unpipelined and branches not taken."""
    name = insn.insn_name()
    if name in FIXED_COST:
        return FIXED_COST[name]
    if name in SINGLE_LOAD_STORE:
        return 2
    if name in MULTI_LOAD_STORE:
        return 1 + _register_count(insn)
    if name in ("sdiv", "udiv"):
        return model.divide
    return 1


class BlockCoster:
    """Disassembles and prices blocks; ``layer_of(address)`` names the function a block belongs to."""

    def __init__(self, model: TimingModel, layer_of: Callable[[int], str]) -> None:
        self.model = model
        self.layer_of = layer_of
        self.md = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        self.md.detail = True

    def cost(self, code: bytes, address: int) -> BlockCost:
        insns = list(self.md.disasm(code, address))
        if not insns:
            raise ValueError(f"cannot disassemble the block at 0x{address:08x}")
        cycles = 0
        previous_ls, previous_writes = False, frozenset()
        for insn in insns:
            single_ls = insn.insn_name() in SINGLE_LOAD_STORE
            pipelined = single_ls and previous_ls and not previous_writes & _address_registers(insn)
            cycles += 1 if pipelined else instruction_cost(insn, self.model)
            previous_ls, previous_writes = single_ls, _written_registers(insn)
        first, last = insns[0], insns[-1]
        ends_in_branch = last.insn_name() in BRANCHES or _writes_pc(last)
        return BlockCost(cycles, len(insns), first.insn_name() in SINGLE_LOAD_STORE,
                         last.insn_name() in SINGLE_LOAD_STORE and not ends_in_branch, ends_in_branch,
                         self.layer_of(address), _address_registers(first), _written_registers(last))


def _address_registers(insn: capstone.CsInsn) -> frozenset[int]:
    """Base and index registers of a memory operand."""
    return frozenset(r for op in insn.operands if op.type == arm_const.ARM_OP_MEM
                     for r in (op.mem.base, op.mem.index) if r)


def _written_registers(insn: capstone.CsInsn) -> frozenset[int]:
    """Registers a load writes: its destination(s) and a written-back base (empty for other instructions:
    only a load's result can delay the next load's address)."""
    if not insn.insn_name().startswith("ldr"):
        return frozenset()
    return frozenset(insn.regs_access()[1])
