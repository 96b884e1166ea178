"""The Unicorn cycle estimator: instruction counts agree with QEMU, per-layer split, timing rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_deploy_support import needs_qemu, standin_reference, standin_vectors, write_standin

from microai.deploy.boards import get_board
from microai.deploy.errors import RunTimeout
from microai.deploy.estimate import ENTRY, OTHER, _Run, estimate, estimate_elf
from microai.deploy.timing import BlockCoster, TimingModel


@needs_qemu
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_instruction_counts_agree_with_qemu(tmp_path: Path, dtype: type) -> None:
    x = standin_vectors(np.dtype(dtype), n=3)
    board = get_board("qemu-m4")
    build = board.build(write_standin(tmp_path / "lib", dtype), x, tmp_path / "out")
    measured = board.run(build, timeout=20)
    est = estimate(build.elf)
    np.testing.assert_array_equal(est.outputs.view(np.uint8), standin_reference(x).view(np.uint8))
    assert np.abs(est.instructions - measured.cycles).max() <= 1, (est.instructions, measured.cycles)
    assert (est.cycles >= est.instructions).all()
    for cycles, instructions in zip(est.layer_cycles, est.layer_instructions, strict=True):
        assert {"layer_0_dense", "layer_1_relu"} <= cycles.keys() <= {"layer_0_dense", "layer_1_relu", OTHER}
        assert cycles["layer_0_dense"] > cycles["layer_1_relu"] > 0
        assert instructions.keys() == cycles.keys()
    assert est.cycles.tolist() == [sum(d.values()) for d in est.layer_cycles]
    assert "zero flash wait states" in est.assumptions and est.instructions_per_second > 1e5
    summary = estimate_elf(build.elf)
    assert summary.vectors == 3 and summary.cycles_per_inference == pytest.approx(est.cycles.mean())
    assert sum(summary.layer_cycles.values()) == pytest.approx(summary.cycles_per_inference)


@needs_qemu
def test_estimator_stops_a_hang(tmp_path: Path) -> None:
    lib = write_standin(tmp_path / "lib", body="for (;;) { __asm volatile(\"\"); }")
    build = get_board("qemu-m4").build(lib, standin_vectors(np.dtype(np.int16)), tmp_path / "out")
    with pytest.raises(RunTimeout, match="no exit within 0.5 s"):
        estimate(build.elf, timeout=0.5)
    with pytest.raises(RunTimeout, match="more than 100000 instructions"):
        estimate(build.elf, max_instructions=100_000)


def assemble(tmp_path: Path, source: str) -> bytes:
    """Thumb-2 machine code of ``source`` (arm-none-eabi-as + objcopy)."""
    asm, obj, binary = tmp_path / "b.s", tmp_path / "b.o", tmp_path / "b.bin"
    asm.write_text(".syntax unified\n.thumb\n" + source + "\n")
    subprocess.run(["arm-none-eabi-as", "-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", str(asm), "-o", str(obj)],
                   check=True)
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text", str(obj), str(binary)],
                   check=True)
    return binary.read_bytes()


@pytest.mark.skipif(not shutil.which("arm-none-eabi-as"), reason="needs arm-none-eabi-as")
@pytest.mark.parametrize(("source", "cycles", "head_ls", "tail_ls", "branch"), [
    ("adds r0, r0, r1", 1, False, False, False),
    ("ldr r0, [r1]\nldr r2, [r3, #4]\nstr r2, [r1]", 2 + 1 + 1, True, True, False),  # pipelined
    ("ldr r0, [r1]\nadds r0, #1\nldr r2, [r3]", 2 + 1 + 2, True, True, False),
    ("ldr r0, [r1]\nldr r2, [r0, #4]\nldr r3, [r2], #4\nldr r4, [r2]", 2 + 2 + 2 + 2, True, True, False),
    ("ldr r0, [r1], #4\nstr r0, [r2]\nldr r3, [r1, r4]", 2 + 1 + 1, True, True, False),  # data, not address
    ("vldr s0, [r0]\nvldr s1, [r0, #4]\nvldmia r0, {s2-s5}", 2 + 2 + 5, False, False, False),
    ("push {r4-r7, lr}", 1 + 5, False, False, False),
    ("pop {r4, pc}", 1 + 2, False, False, True),
    ("mla r0, r1, r2, r3\nsmlad r0, r1, r2, r0\nmul r0, r1", 2 + 1 + 1, False, False, False),
    ("vmla.f32 s0, s1, s2\nvadd.f32 s0, s0, s1\nvdiv.f32 s0, s0, s1", 3 + 1 + 14, False, False, False),
    ("vldr s0, [r0]\nvpush {d8-d9}", 2 + 1 + 4, False, False, False),
    ("ldrd r0, r1, [r2]\nsdiv r0, r1, r2", 3 + TimingModel().divide, False, False, False),
    ("cmp r0, #0\nbne .", 2, False, False, True),
    ("mov pc, lr", 1, False, False, True),
])
def test_block_costs_follow_the_trm(tmp_path: Path, source: str, cycles: int, head_ls: bool, tail_ls: bool,
                                    branch: bool) -> None:
    block = BlockCoster(TimingModel(), lambda a: "f").cost(assemble(tmp_path, source), 0x100)
    assert (block.cycles, block.head_load_store, block.tail_load_store, block.ends_in_branch) == (
        cycles, head_ls, tail_ls, branch)
    assert block.instructions == source.count("\n") + 1


class FakeUnicorn:
    """Just enough of Uc for _Run.on_block: code bytes by address."""

    def __init__(self, code: dict[int, bytes]) -> None:
        self.code = code

    def mem_read(self, address: int, size: int) -> bytes:
        return self.code[address][:size]

    def emu_stop(self) -> None:
        raise AssertionError("budget exceeded")


@pytest.mark.skipif(not shutil.which("arm-none-eabi-as"), reason="needs arm-none-eabi-as")
def test_pipelining_across_fall_through_blocks_and_taken_branches(tmp_path: Path) -> None:
    a = assemble(tmp_path, "adds r0, #1\nldr r1, [r2]")  # ends in a load, falls through into b
    b = assemble(tmp_path, "ldr r3, [r2, #4]\ncmp r3, #0\nbne .+16")
    c = assemble(tmp_path, "adds r0, #2")
    model = TimingModel(branch_refill=2)
    layers = {0x100: "layer_0_x", 0x100 + len(a): "layer_0_x", 0x200: OTHER, 0x300: ENTRY}
    uc = FakeUnicorn({0x100: a, 0x100 + len(a): b, 0x200: c, 0x300: c})
    run = _Run(uc, BlockCoster(model, layers.get), 10**6)
    run.on_block(uc, 0x100, len(a), None)
    run.on_block(uc, 0x100 + len(a), len(b), None)  # sequential: its first LDR pipelines (1 cycle)
    run.on_block(uc, 0x200, len(c), None)  # a helper the layer called, after a taken branch
    run.on_block(uc, 0x300, len(c), None)  # back in the model's entry: later helpers are nobody's
    run.on_block(uc, 0x200, len(c), None)
    cycles, instructions = run.totals()
    assert cycles == {"layer_0_x": (1 + 2) + (1 + 1 + 1 + model.branch_refill) + 1, OTHER: 1 + 1}
    assert instructions == {"layer_0_x": 6, OTHER: 2}


@needs_qemu
@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_instruction_counts_agree_with_qemu_on_a_whole_network(tmp_path: Path, precision: str) -> None:
    """The estimator runs the very instructions QEMU runs on ResNetv1-6 (optimized kernels: inline assembly,
    SIMD, the FPU), vector by vector, and computes the same outputs."""
    from test_codegen_graphs import resnet_graph
    from test_codegen_support import quantized

    import codegen

    float_graph = resnet_graph(16)
    x = np.random.default_rng(0).standard_normal((32, 9, 128)).astype(np.float32)
    graph = quantized(float_graph, x, precision)
    codegen.convert(graph, tmp_path / "c")
    board = get_board("qemu-m4")
    build = board.build(tmp_path / "c", codegen.pack_input(graph, x[:2]), tmp_path / "out")
    measured = board.run(build, timeout=60)
    est = estimate(build.elf)
    np.testing.assert_array_equal(est.outputs.view(np.uint8), measured.outputs.view(np.uint8))
    assert np.abs(est.instructions - measured.cycles).max() <= 1, (est.instructions, measured.cycles)
    functions = {layer["function"] for layer in codegen.load_report(tmp_path / "c")["layers"]}
    assert set(est.layer_cycles[0]) >= functions
    assert est.layer_cycles[0].get(OTHER, 0) < 0.001 * est.cycles[0]  # shared kernels count for their layer
