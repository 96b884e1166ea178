"""Cycles per MAC of ResNetv1-6 (UCI-HAR shape) on the emulated Cortex-M4F: the paper's Tables A3/A4.

For each filter count F and precision the model (random weights: timing does not depend on them,
seeded) is quantized (int16: Q7.9 for the whole network as in the paper; int8: per-layer formats,
the arithmetic of the paper's QAT models), converted to C, built for qemu-m4 at -O2, run on
QEMU (instruction count via -icount) and in the Unicorn estimator (Cortex-M4 cycles). Outputs are
checked against the reference executor. MACs = 1088 F^2 + 3462 F.

With ``--tflm`` the same float model also goes through TFLite (float32, and int8 by TFLite's
post-training quantization on the same calibration inputs) into TFLite Micro + CMSIS-NN built from
the tree ``MICROAI_TFLM_TREE`` names (default ../shared/tflm) with the same compiler and flags; its
rows (checked bit for bit against the TFLM host runtime) follow MicroAI's, with the ratio
MicroAI / TFLM of cycles, ROM and RAM (arena counted at the bytes TFLM used).

    .venv/bin/python benchmarks/cycles_per_mac.py --filters 16 32 48 64 80 --tflm \
        --json results/cycles_per_mac.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import codegen
from microai.deploy.boards import get_board
from microai.deploy.estimate import estimate
from microai.graph.ir import Graph
from microai.graph.torch_import import from_torch
from microai.models.resnet import resnet
from microai.quant import reference
from microai.quant.ptq import quantize_ptq

ROOT = Path(__file__).resolve().parent.parent
INPUT_SHAPE, CLASSES = (9, 128), 6
PRECISIONS = ("float32", "int16", "int8")
TFLM_PRECISIONS = ("float32", "int8")
CLOCK_HZ = 48_000_000


@dataclass
class Row:
    filters: int
    precision: str
    framework: str
    macs: int
    rom_kib: float
    ram_kib: float
    qemu_instructions: int
    est_cycles: int | None
    instructions_per_mac: float
    cycles_per_mac: float | None
    est_ms_at_48mhz: float | None
    matches_reference: bool
    estimator_minstr_per_s: float | None


def paper_macs(filters: int) -> int:
    return 1088 * filters**2 + 3462 * filters


def build_graph(filters: int, precision: str, calibration: np.ndarray, seed: int) -> Graph:
    torch.manual_seed(seed)
    graph = from_torch(resnet(INPUT_SHAPE, CLASSES, filters).eval(), INPUT_SHAPE, f"resnetv1_6_f{filters}")
    if precision == "float32":
        return graph
    if precision == "int16":
        return quantize_ptq(graph, calibration, 16, granularity="network", fixed_frac=9)
    return quantize_ptq(graph, calibration, 8, granularity="layer")


def matches_reference(graph: Graph, x: np.ndarray, outputs: np.ndarray) -> bool:
    expected = reference.run(graph, x)
    if graph.is_quantized:
        return bool(np.array_equal(outputs.astype(np.int64), expected))
    return bool(np.allclose(outputs, expected, rtol=1e-5, atol=1e-6))


def measure(filters: int, precision: str, workdir: Path, with_estimate: bool, seed: int) -> Row:
    rng = np.random.default_rng(seed)
    calibration = rng.normal(0, 1, (32, *INPUT_SHAPE)).astype(np.float32)
    x = calibration[:1]
    graph = build_graph(filters, precision, calibration, seed)
    macs = graph.macs()
    if macs != paper_macs(filters):
        raise RuntimeError(f"F={filters}: graph has {macs} MACs, the paper's formula gives "
                           f"{paper_macs(filters)}")
    lib = workdir / f"f{filters}_{precision}" / "lib"
    codegen.convert(graph, lib)
    board = get_board("qemu-m4")
    build = board.build(lib, codegen.pack_input(graph, x), lib.parent / "build")
    run = board.run(build, timeout=300)
    est = estimate(build.elf) if with_estimate else None
    if est is not None and abs(int(est.instructions[0]) - int(run.cycles[0])) > 2:
        raise RuntimeError(f"F={filters} {precision}: estimator counted {est.instructions[0]} "
                           f"instructions, QEMU {run.cycles[0]}")
    cycles = int(est.cycles[0]) if est else None
    return Row(
        filters=filters, precision=precision, framework="microai", macs=macs,
        rom_kib=round(build.rom_bytes / 1024, 1), ram_kib=round(build.ram_bytes / 1024, 1),
        qemu_instructions=int(run.cycles[0]), est_cycles=cycles,
        instructions_per_mac=round(int(run.cycles[0]) / macs, 2),
        cycles_per_mac=round(cycles / macs, 2) if cycles else None,
        est_ms_at_48mhz=round(cycles / CLOCK_HZ * 1000, 1) if cycles else None,
        matches_reference=matches_reference(graph, x, codegen.unpack_output(
            run.outputs, graph.node(graph.output).shape, graph.node(graph.output).shape)),
        estimator_minstr_per_s=round(est.instructions_per_second / 1e6, 2) if est else None,
    )


def measure_tflm(filters: int, precision: str, workdir: Path, tflm: tuple, with_estimate: bool,
                 seed: int) -> Row:
    """The float model of :func:`measure` through TFLite into TFLite Micro on qemu-m4."""
    from microai.deploy.tflm.measure import measure_tflite
    from microai.tflite.convert import to_tflite

    rng = np.random.default_rng(seed)
    calibration = rng.normal(0, 1, (32, *INPUT_SHAPE)).astype(np.float32)
    graph = build_graph(filters, "float32", calibration, seed)
    folder = workdir / f"f{filters}_{precision}_tflm"
    folder.mkdir(parents=True)
    tflite = folder / f"{precision}.tflite"
    tflite.write_bytes(to_tflite(graph, precision, calibration))
    m = measure_tflite(tflite, calibration[:1], *tflm, folder / "build", with_estimate=with_estimate)
    macs, instructions = graph.macs(), int(m.run.cycles[0])
    cycles = int(m.estimate.cycles[0]) if m.estimate else None
    return Row(
        filters=filters, precision=precision, framework="tflite-micro", macs=macs,
        rom_kib=round(m.build.rom_bytes / 1024, 1), ram_kib=round(m.ram_bytes / 1024, 1),
        qemu_instructions=instructions, est_cycles=cycles,
        instructions_per_mac=round(instructions / macs, 2),
        cycles_per_mac=round(cycles / macs, 2) if cycles else None,
        est_ms_at_48mhz=round(cycles / CLOCK_HZ * 1000, 1) if cycles else None,
        matches_reference=bool(m.matches.all()),
        estimator_minstr_per_s=round(m.estimate.instructions_per_second / 1e6, 2) if m.estimate else None,
    )


def tflm_setup() -> tuple:
    """(tree, library) for --tflm: the tree $MICROAI_TFLM_TREE, else ../shared/tflm; the cached library."""
    from microai.deploy.tflm.library import build_library
    from microai.deploy.tflm.tree import load_tree

    tree = load_tree(Path(os.environ.get("MICROAI_TFLM_TREE") or ROOT.parent / "shared" / "tflm"))
    return tree, build_library(tree)


def ratio_line(ours: Row, tflm: Row) -> str:
    cycles = f"{ours.est_cycles / tflm.est_cycles:.2f}" if ours.est_cycles and tflm.est_cycles else "-"
    return (f"{'':>3} {'ratio':>9} MicroAI / TFLM: est. cycles {cycles}, instructions "
            f"{ours.qemu_instructions / tflm.qemu_instructions:.2f}, ROM {ours.rom_kib / tflm.rom_kib:.2f}, "
            f"RAM {ours.ram_kib / tflm.ram_kib:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32, 48, 64, 80])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--no-estimate", action="store_true", help="QEMU instruction counts only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--tflm", action="store_true",
                        help="also TFLite Micro + CMSIS-NN (float32, int8 PTQ) with the ratio MicroAI / TFLM")
    args = parser.parse_args(argv)
    rows = []
    tflm = tflm_setup() if args.tflm else None
    header = (f"{'F':>3} {'precision':>9} {'framework':>12} {'MACs':>10} {'ROM KiB':>8} {'RAM KiB':>8} "
              f"{'QEMU instr':>11} {'est. cycles':>12} {'instr/MAC':>9} {'cyc/MAC':>8} {'ms@48MHz':>9} "
              f"{'exact':>5}")
    print(header)
    with tempfile.TemporaryDirectory(prefix="microai-bench-") as tmp:
        for filters in args.filters:
            for precision in args.precisions:
                started = time.perf_counter()
                r = measure(filters, precision, Path(tmp), not args.no_estimate, args.seed)
                rows.append(r)
                _print(r, started)
                if tflm and precision in TFLM_PRECISIONS:
                    started = time.perf_counter()
                    rows.append(measure_tflm(filters, precision, Path(tmp), tflm, not args.no_estimate,
                                             args.seed))
                    _print(rows[-1], started)
                    print(ratio_line(r, rows[-1]), flush=True)
    print("instructions: QEMU -icount (emulated); cycles: estimated, " + _assumptions())
    if tflm:
        print(f"TFLite Micro: {tflm[0].root}, library {tflm[1].key} (built in {tflm[1].build_seconds} s "
              f"with {tflm[1].jobs} jobs, cached); RAM with the tensor arena at the bytes used on the board")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0 if all(r.matches_reference for r in rows) else 1


def _print(r: Row, started: float) -> None:
    print(f"{r.filters:>3} {r.precision:>9} {r.framework:>12} {r.macs:>10} {r.rom_kib:>8} {r.ram_kib:>8} "
          f"{r.qemu_instructions:>11} {r.est_cycles if r.est_cycles else '-':>12} "
          f"{r.instructions_per_mac:>9} {r.cycles_per_mac or '-':>8} "
          f"{r.est_ms_at_48mhz or '-':>9} "
          f"{'yes' if r.matches_reference else 'NO':>5}", flush=True)
    print(f"    ({time.perf_counter() - started:.1f} s; estimator "
          f"{r.estimator_minstr_per_s} M instr/s)", file=sys.stderr, flush=True)


def _assumptions() -> str:
    from microai.deploy.timing import TimingModel

    return TimingModel().describe()


if __name__ == "__main__":
    sys.exit(main())
