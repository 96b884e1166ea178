"""The Cortex-M4 DSP path of the generated C (SMLAD, SXTB16) == reference executor, on the emulated board.

The host build compiles the plain C loops only; here the same library is cross-compiled for qemu-m4
(gcc defines __ARM_FEATURE_DSP for -mcpu=cortex-m4), run on QEMU and compared bit for bit. Each
graph mixes the cases the word-wide kernel must get right: odd and even reduction lengths (tails),
odd output channel counts (the unpaired last channel), padding (windows cut at the edges, so
unaligned word loads), strides and 1x1 kernels.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_codegen_graphs import resnet_graph
from test_codegen_support import Builder, quantized, whole_row_bands
from test_deploy_support import needs_qemu

import codegen
from codegen.convert import prepare
from codegen.lowering import lower
from microai.deploy.boards import get_board
from microai.graph import Graph
from microai.ops.conv import interior
from microai.quant import reference
from microai.quant.ptq import quantize_ptq


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 7), st.integers(1, 4), st.integers(0, 6), st.integers(0, 6))
def test_interior_positions_are_exactly_the_unpadded_windows(in_size: int, kernel: int, stride: int,
                                                             pad_before: int, pad_after: int) -> None:
    """The paired Conv1D path reads whole windows without bounds checks: [first, end) must be exact."""
    out_size = (in_size + pad_before + pad_after - kernel) // stride + 1
    assume(out_size >= 1)
    starts = [pos * stride - pad_before for pos in range(out_size)]
    inside = [pos for pos, start in enumerate(starts) if start >= 0 and start + kernel <= in_size]
    first, end = interior(in_size, out_size, kernel, stride, pad_before)
    assert list(range(first, end)) == inside


def conv1d_chain() -> Graph:
    b = Builder((9, 24), seed=1)
    x = b.conv("x", 5, 3, padding=[1, 1], relu=True)  # n = 27 (odd), 5 channels (odd)
    x = b.conv(x, 6, 5, stride=2, padding=[2, 1])  # edge windows of 3 and 4 taps
    x = b.conv(x, 4, 1, stride=2)  # pointwise, n = 6
    x = b.conv(x, 7, 3, relu=True)  # unpadded, n = 12
    b.dense(b.add("Flatten", [x]), 3)  # n = 28
    return b.graph()


def conv2d_chain() -> Graph:
    b = Builder((3, 9, 8), seed=2)
    x = b.conv("x", 4, 3, padding=[1, 1, 1, 1], relu=True)  # rows of 9 values, cut to 6 at the edges
    x = b.conv(x, 5, (3, 2), stride=2, padding=[1, 0, 0, 1])
    x = b.conv(x, 4, 1)  # pointwise, n = 5
    x = b.conv(x, 3, (2, 2), relu=True)  # unpadded rows of 8: int8 pairs two positions, the odd third alone
    b.dense(b.add("Flatten", [x]), 5)
    return b.graph()


GRAPHS = {"conv1d_chain": conv1d_chain, "conv2d_chain": conv2d_chain, "resnet_f8": lambda: resnet_graph(8)}


def quantize(graph: Graph, x: np.ndarray, precision: str) -> Graph:
    if precision == "int5":  # int8_t storage with a width that is not a power of two
        return quantize_ptq(graph, x, 5, "layer", rounding="floor", quant_rounding="trunc")
    return quantized(graph, x, precision)


def probe_vectors(shape: tuple[int, ...]) -> np.ndarray:
    """Ordinary inputs, plus inputs far outside the calibration range (every value saturated)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    return np.concatenate([x, 1e3 * np.sign(x[:1]), np.full_like(x[:1], -1e3)])


def dsp_instructions(elf: Path) -> set[str]:
    dump = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    return {m for m in ("smlad", "sxtb16") if f"\t{m}\t" in dump}


@needs_qemu
@pytest.mark.parametrize(("precision", "whole_rows"), [("int16", False), ("int8", False), ("int8", True),
                                                        ("int9", False), ("int5", False)])
@pytest.mark.parametrize("model", sorted(GRAPHS))
def test_dsp_path_matches_reference_on_qemu(model: str, precision: str, whole_rows: bool,
                                            tmp_path: Path) -> None:
    """int8 twice: as generated (where the arena has no room for a row's band, a convolution runs through the
    channel pairs: each graph has both kinds) and with whole-row bands only (codegen.convert.block_bands)."""
    float_graph = GRAPHS[model]()
    calibration = np.random.default_rng(0).standard_normal((32, *float_graph.input.shape)).astype(np.float32)
    graph = quantize(float_graph, calibration, precision)
    x = probe_vectors(graph.input.shape)
    with whole_row_bands(whole_rows):
        result = codegen.convert(graph, tmp_path / "c")
    board = get_board("qemu-m4")
    build = board.build(tmp_path / "c", codegen.pack_input(graph, x), tmp_path / "build")
    expected_instructions = {"smlad", "sxtb16"} if graph.width <= 8 else {"smlad"}
    assert dsp_instructions(build.elf) == expected_instructions
    run = board.run(build, timeout=60)
    outputs = codegen.unpack_output(run.outputs, result.output_shape, result.output_layout_shape)
    expected = reference.run(prepare(graph), x)
    assert np.abs(expected).max() > 0  # the comparison is not between two zero tensors
    np.testing.assert_array_equal(outputs.astype(np.int64), expected)


@needs_qemu
def test_int8_weights_stay_one_byte_each_in_flash(tmp_path: Path) -> None:
    """Widening happens in scratch memory at run time: int8 kernel arrays keep one byte per weight in flash
    (plus the zeros that pad channel counts and window lengths to the blocks the kernels read)."""
    float_graph = conv1d_chain()
    calibration = np.random.default_rng(0).standard_normal((32, *float_graph.input.shape)).astype(np.float32)
    graph = quantize(float_graph, calibration, "int8")
    codegen.convert(graph, tmp_path / "c")
    build = get_board("qemu-m4").build(tmp_path / "c", codegen.pack_input(graph, calibration[:1]),
                                       tmp_path / "build")
    symbols = subprocess.run(["arm-none-eabi-nm", "-S", str(build.elf)], capture_output=True, text=True,
                             check=True).stdout.split("\n")
    sizes = {fields[3]: int(fields[1], 16) for fields in map(str.split, symbols) if len(fields) == 4}
    simplified = prepare(graph)
    arrays = [a for layer in lower(simplified, "optimized").layers for a in layer.arrays]
    stored = {a.name: a.values.size for a in arrays if a.name.startswith("kernel_")}
    raw = {f"kernel_{n.name}": n.weights["kernel"].size for n in simplified.nodes if "kernel" in n.weights}
    assert stored.keys() == raw.keys() and {name: sizes[name] for name in stored} == stored
    assert all(raw[name] <= stored[name] <= 1.7 * raw[name] for name in raw), (raw, stored)
