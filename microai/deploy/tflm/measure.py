"""Measuring a ``.tflite`` model on a board against the TFLM host runtime (its bit-exact reference).

``outputs_match`` compares raw output tensors bit for bit (int8 values, float32 bit patterns);
``arena_ram_bytes`` counts the tensor arena at the bytes TFLM used on the board (its ``ARENA`` line)
rather than at the reserve the image was linked with (host figure + margin, see
:func:`microai.deploy.tflm.sources.arena_size`), as a deployment sized from that figure would.
``measure_tflite`` is the whole path on qemu-m4 for benchmarks and tests: build, QEMU run,
comparison with the host runtime, Unicorn cycle estimate with a per-operator profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microai.deploy.boards import get_board
from microai.deploy.boards.base import BuildResult, RunResult
from microai.deploy.errors import DeployError
from microai.deploy.estimate import Estimate, estimate
from microai.deploy.tflm.firmware import build_tflm_firmware
from microai.deploy.tflm.library import TflmLibrary
from microai.deploy.tflm.tree import TflmTree
from microai.tflite.runtime import TFLMRun, arena_bytes, operators, read_model, run_tflm

#: Operators whose multiply-accumulates are counted: name -> MACs per output value from the filter shape.
_MACS_PER_OUTPUT = {
    "CONV_2D": lambda f: math.prod(f[1:]),  # filter (out_ch, kh, kw, in_ch)
    "DEPTHWISE_CONV_2D": lambda f: f[1] * f[2],  # filter (1, kh, kw, out_ch)
    "FULLY_CONNECTED": lambda f: f[-1],  # filter (out, in)
}


def outputs_match(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per vector: True where every output equals the reference bit for bit (same dtype required)."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.dtype != actual.dtype or expected.size != actual.size:
        raise DeployError(f"board outputs {actual.dtype}{list(actual.shape)} cannot be compared with the "
                          f"TFLM host runtime's {expected.dtype}{list(expected.shape)}")
    n = len(expected)
    return np.all(expected.reshape(n, -1).view(np.uint8) == actual.reshape(n, -1).view(np.uint8), axis=1)


def operator_macs(tflite: Path) -> list[int]:
    """Multiply-accumulates of each operator of the main subgraph, in execution order (0 for operators
    without weights), so that a per-operator cycle profile gives cycles per MAC."""
    from tflite_micro import runtime

    model = runtime.convert_bytearray_to_object(bytearray(read_model(tflite)))
    graph = model.subgraphs[0]
    macs = []
    for name, op in zip(operators(tflite), graph.operators or [], strict=True):
        per_output = _MACS_PER_OUTPUT.get(name)
        if per_output is None:
            macs.append(0)
            continue
        weights = list(graph.tensors[op.inputs[1]].shape)
        macs.append(int(per_output(weights) * math.prod(graph.tensors[op.outputs[0]].shape)))
    return macs


def arena_ram_bytes(data: int, bss: int, stack: int, arena: tuple[int, int] | None) -> int:
    """data + bss + ``stack``, a tensor arena (used, reserved) counted at its used bytes."""
    unused = arena[1] - arena[0] if arena else 0
    return data + bss - unused + stack


@dataclass(frozen=True)
class TflmMeasurement:
    """One ``.tflite`` on qemu-m4: footprint, QEMU instructions, estimated cycles, exactness."""

    build: BuildResult
    run: RunResult
    reference: TFLMRun
    estimate: Estimate | None
    matches: np.ndarray  # per vector

    @property
    def ram_bytes(self) -> int:
        """data + bss + the stack high-water mark, the arena at its used bytes."""
        build = self.build
        return arena_ram_bytes(build.data, build.bss, self.run.stack_bytes_used, self.run.arena_bytes)


def measure_tflite(tflite: Path, x: np.ndarray, tree: TflmTree, library: TflmLibrary, out_dir: Path,
                   opt: str = "-O2", timeout: float = 300.0, with_estimate: bool = True,
                   channels_first: bool = True) -> TflmMeasurement:
    """Build ``tflite`` for qemu-m4 with the inputs ``x`` (float, as :func:`run_tflm` takes them), run it
    on QEMU and in the cycle estimator, and compare its outputs with the TFLM host runtime's."""
    reference = run_tflm(tflite, x, channels_first)
    board = get_board("qemu-m4")
    build, _ = build_tflm_firmware(board, tflite, tree, library, arena_bytes(tflite).total,
                                   reference.inputs.reshape(len(x), -1), out_dir, opt)
    run = board.run(build, timeout=timeout)
    est = estimate(build.elf, timeout=timeout) if with_estimate else None
    if est is not None and np.abs(est.instructions - run.cycles).max() > 2:
        raise DeployError(f"{build.elf}: the estimator counted {est.instructions.tolist()} instructions, "
                          f"QEMU {run.cycles.tolist()}")
    return TflmMeasurement(build, run, reference, est, outputs_match(reference.outputs, run.outputs))
