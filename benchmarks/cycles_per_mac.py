"""Cycles per MAC of ResNetv1-6 (UCI-HAR shape) on the emulated Cortex-M4F, reference and optimized kernels.

For each filter count F and precision the model (random weights: timing does not depend on them,
seeded) is quantized (int16: Q7.9 for the whole network as in the paper; int8: per-layer formats,
the arithmetic of the paper's QAT models), converted to C with each kernel set, built for qemu-m4 at
-O2, run on QEMU (instruction count via -icount) and in the Unicorn estimator (Cortex-M4 cycles,
docs/estimator.md). Outputs are checked against the reference executor. MACs = 1088 F^2 + 3462 F.
ROM = text + data without the embedded test input; RAM = data + bss + the stack high-water mark.

With ``--tflm`` the same float model also goes through TFLite (float32, and int8 by TFLite's
post-training quantization on the same calibration inputs) into TFLite Micro + CMSIS-NN built from
the tree ``MICROAI_TFLM_TREE`` names (default ../shared/tflm) with the same compiler and flags: a
row with kernels "tflm" (outputs checked bit for bit against the TFLM host runtime, RAM with the
tensor arena at the bytes TFLM used), then the ratio of each MicroAI kernel set to it.

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
from codegen.lowering import KERNEL_SETS
from microai.deploy.boards import get_board
from microai.deploy.estimate import estimate
from microai.deploy.timing import TimingModel
from microai.graph.ir import Graph
from microai.graph.torch_import import from_torch
from microai.models.resnet import resnet
from microai.quant import reference
from microai.quant.compare import matching_vectors
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
    kernels: str
    macs: int
    qemu_instructions: int
    est_cycles: int
    cycles_per_mac: float
    biggest_conv: str
    biggest_conv_cycles_per_mac: float
    rom_kib: float
    ram_kib: float
    est_ms_at_48mhz: float
    matches_reference: bool


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


def measure(graph: Graph, filters: int, precision: str, kernels: str, x: np.ndarray, workdir: Path) -> Row:
    macs = graph.macs()
    lib = workdir / f"f{filters}_{precision}_{kernels}" / "lib"
    result = codegen.convert(graph, lib, kernels=kernels)
    board = get_board("qemu-m4")
    build = board.build(lib, codegen.pack_input(graph, x), lib.parent / "build")
    run = board.run(build, timeout=600)
    est = estimate(build.elf)
    if np.abs(est.instructions - run.cycles).max() > 2:
        raise RuntimeError(f"F={filters} {precision} {kernels}: estimator counted {est.instructions} "
                           f"instructions, QEMU {run.cycles}")
    outputs = codegen.unpack_output(run.outputs, result.output_shape, result.output_layout_shape)
    biggest = max(result.layers, key=lambda layer: layer["macs"])
    cycles = int(est.cycles[0])
    return Row(
        filters=filters, precision=precision, kernels=kernels, macs=macs,
        qemu_instructions=int(run.cycles[0]), est_cycles=cycles, cycles_per_mac=round(cycles / macs, 3),
        biggest_conv=biggest["node"],
        biggest_conv_cycles_per_mac=round(est.layer_cycles[0][biggest["function"]] / biggest["macs"], 3),
        rom_kib=round(build.rom_bytes / 1024, 2),
        ram_kib=round((build.data + build.bss + est.stack_bytes_used) / 1024, 2),
        est_ms_at_48mhz=round(cycles / CLOCK_HZ * 1000, 1),
        matches_reference=bool(matching_vectors(graph, outputs, reference.run(graph, x)).all()),
    )


def measure_tflm(graph: Graph, filters: int, precision: str, calibration: np.ndarray, x: np.ndarray,
                 workdir: Path, tflm: tuple) -> Row:
    """The float ``graph`` through TFLite (``precision``, PTQ calibrated on ``calibration``) into TFLM."""
    from microai.deploy.tflm.measure import measure_tflite, operator_macs
    from microai.tflite.convert import to_tflite

    folder = workdir / f"f{filters}_{precision}_tflm"
    folder.mkdir(parents=True)
    tflite = folder / f"{precision}.tflite"
    tflite.write_bytes(to_tflite(graph, precision, calibration))
    m = measure_tflite(tflite, x, *tflm, folder / "build")
    macs = graph.macs()
    per_op = operator_macs(tflite)
    biggest = max(range(len(per_op)), key=per_op.__getitem__)
    label = next(k for k in m.estimate.layer_cycles[0] if k.startswith(f"{biggest:02d} "))
    cycles = int(m.estimate.cycles[0])
    return Row(
        filters=filters, precision=precision, kernels="tflm", macs=macs,
        qemu_instructions=int(m.run.cycles[0]), est_cycles=cycles, cycles_per_mac=round(cycles / macs, 3),
        biggest_conv=label,
        biggest_conv_cycles_per_mac=round(m.estimate.layer_cycles[0][label] / per_op[biggest], 3),
        rom_kib=round(m.build.rom_bytes / 1024, 2), ram_kib=round(m.ram_bytes / 1024, 2),
        est_ms_at_48mhz=round(cycles / CLOCK_HZ * 1000, 1), matches_reference=bool(m.matches.all()),
    )


def tflm_setup() -> tuple:
    """(tree, library) for --tflm: the tree $MICROAI_TFLM_TREE, else ../shared/tflm; the cached library."""
    from microai.deploy.tflm.library import build_library
    from microai.deploy.tflm.tree import load_tree

    tree = load_tree(Path(os.environ.get("MICROAI_TFLM_TREE") or ROOT.parent / "shared" / "tflm"))
    return tree, build_library(tree)


def ratio_line(ours: Row, tflm: Row) -> str:
    return (f"{'':>3} {'':>9} {ours.kernels:>9} / tflm: est. cycles {ours.est_cycles / tflm.est_cycles:.2f}, "
            f"ROM {ours.rom_kib / tflm.rom_kib:.2f}, RAM {ours.ram_kib / tflm.ram_kib:.2f}")


HEADER = (f"{'F':>3} {'precision':>9} {'kernels':>9} {'MACs':>9} {'QEMU instr':>11} {'est. cycles':>11} "
          f"{'cyc/MAC':>7} {'conv cyc/MAC':>12} {'ROM KiB':>8} {'RAM KiB':>8} {'ms@48MHz':>8} {'speedup':>7} "
          f"{'exact':>5}")


def format_row(r: Row, baseline: Row | None) -> str:
    speedup = f"{baseline.est_cycles / r.est_cycles:.2f}x" if baseline is not None else "-"
    return (f"{r.filters:>3} {r.precision:>9} {r.kernels:>9} {r.macs:>9} {r.qemu_instructions:>11} "
            f"{r.est_cycles:>11} {r.cycles_per_mac:>7} {r.biggest_conv_cycles_per_mac:>12} {r.rom_kib:>8} "
            f"{r.ram_kib:>8} {r.est_ms_at_48mhz:>8} {speedup:>7} {'yes' if r.matches_reference else 'NO':>5}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", type=int, nargs="+", default=[16, 32, 48, 64, 80])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--kernels", nargs="+", choices=KERNEL_SETS, default=list(KERNEL_SETS))
    parser.add_argument("--vectors", type=int, default=2, help="test inputs per image (all must match)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--tflm", action="store_true",
                        help="also TFLite Micro + CMSIS-NN (float32, int8 PTQ) with the ratio MicroAI / TFLM")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    tflm = tflm_setup() if args.tflm else None
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="microai-bench-") as tmp:
        for filters in args.filters:
            rng = np.random.default_rng(args.seed)
            calibration = rng.normal(0, 1, (32, *INPUT_SHAPE)).astype(np.float32)
            for precision in args.precisions:
                graph = build_graph(filters, precision, calibration, args.seed)
                if graph.macs() != paper_macs(filters):
                    raise RuntimeError(f"F={filters}: graph has {graph.macs()} MACs, the paper's formula "
                                       f"gives {paper_macs(filters)}")
                baseline = None
                for kernels in args.kernels:
                    started = time.perf_counter()
                    row = measure(graph, filters, precision, kernels, calibration[:args.vectors], Path(tmp))
                    rows.append(row)
                    print(format_row(row, baseline), flush=True)
                    print(f"    ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)
                    baseline = baseline or row
                if tflm and precision in TFLM_PRECISIONS:
                    started = time.perf_counter()
                    ours = rows[-len(args.kernels):]
                    float_graph = build_graph(filters, "float32", calibration, args.seed)
                    rows.append(measure_tflm(float_graph, filters, precision, calibration,
                                             calibration[:args.vectors], Path(tmp), tflm))
                    print(format_row(rows[-1], None), flush=True)
                    print(f"    ({time.perf_counter() - started:.1f} s)", file=sys.stderr, flush=True)
                    for row in ours:
                        print(ratio_line(row, rows[-1]), flush=True)
    print("QEMU instr: instructions counted by QEMU -icount (emulated); est. cycles: estimated by the "
          f"Unicorn timing model ({TimingModel().describe()}); conv cyc/MAC: the convolution with the most "
          "MACs; speedup: first kernel set's cycles / this row's; exact: every output equals the reference "
          "executor's (tflm: the TFLM host runtime's, bit for bit).")
    if tflm:
        print(f"tflm: TFLite Micro + CMSIS-NN from {tflm[0].root}, library {tflm[1].key} (compiled in "
              f"{tflm[1].build_seconds} s with {tflm[1].jobs} jobs, then cached); its conv cyc/MAC: the "
              "CONV_2D operator with the most MACs; RAM with the tensor arena at the bytes TFLM used.")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0 if all(r.matches_reference for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
