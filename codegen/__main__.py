"""CLI: ``python -m codegen MODEL -o OUTDIR``: MODEL is a graph artifact (a Graph.save stem, .json or
.npz), a Keras model (.keras, .h5), converted to a float32 graph first, or a quantized TFLite model
(.tflite: int8, or int16 activations with int8 weights), imported with TFLite's integer arithmetic."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codegen.convert import convert
from codegen.errors import CodegenError
from codegen.lowering import KERNEL_SETS
from microai.graph import Graph, GraphError
from microai.graph.keras_io import KERAS_SUFFIXES, load_keras
from microai.tflite.importer import TFLITE_SUFFIX, load_tflite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codegen", description=__doc__)
    parser.add_argument("artifact", type=Path,
                        help="graph artifact (<stem>, <stem>.json, <stem>.npz), Keras model (.keras, .h5) or "
                             "quantized TFLite model (.tflite)")
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the generated C library")
    parser.add_argument("--kernels", choices=KERNEL_SETS, default="optimized",
                        help="layer C: plain reference loops, or register-blocked SIMD kernels (default)")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder that is not a codegen output "
                             "(its other files are kept)")
    args = parser.parse_args(argv)
    try:
        result = convert(_load(args.artifact), args.outdir, kernels=args.kernels, force=args.force)
    except (CodegenError, GraphError, OSError) as e:
        print(f"codegen: {args.artifact}: {e}", file=sys.stderr)
        return 1
    print(f"{args.outdir}: {len(result.layers)} layers, {result.macs} MACs, activations "
          f"{result.activation_bytes_planned} B planned ({result.activation_bytes_pools} B with the "
          f"paper's pools, lower bound {result.activation_bytes_lower_bound} B)", file=sys.stderr)
    return 0


def _load(path: Path) -> Graph:
    if path.suffix.lower() in KERAS_SUFFIXES:
        return load_keras(path)  # imports TensorFlow (seconds): only for Keras models
    if path.suffix.lower() == TFLITE_SUFFIX:
        return load_tflite(path)
    return Graph.load(path)


if __name__ == "__main__":
    sys.exit(main())
