"""A ``.tflite`` model -> the sources the TFLM adapter (firmware/tflm) is built with.

``write_model_sources`` writes, into one folder: ``model_data.c`` (the flatbuffer as an aligned C
array), ``model.h`` / ``number.h`` (the harness's model interface) and ``tflm_model.h`` (arena size,
an op resolver registering only the model's operators, the operators in execution order).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from microai.deploy.errors import BuildError
from microai.deploy.tflm.tree import TflmTree
from microai.deploy.toolchain import FIRMWARE
from microai.tflite.runtime import TensorSpec, operators, read_model, tensor_specs

ADAPTER_DIR = FIRMWARE / "tflm"
RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
_ADD_BUILTIN = re.compile(r"TfLiteStatus\s+(Add\w+)\s*\((?:[^()]|\([^()]*\))*\)\s*\{\s*"
                          r"return\s+AddBuiltin\(\s*BuiltinOperator_(\w+)")
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(ADAPTER_DIR), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
#: TFLM's arena alignment: buffers start on 16-byte boundaries.
ARENA_ALIGNMENT = 16
#: Tensor dtypes the harness's number_t can carry: numpy dtype -> (C type, TfLiteType).
NUMBER_TYPES = {
    np.dtype(np.int8): ("int8_t", "kTfLiteInt8"),
    np.dtype(np.int16): ("int16_t", "kTfLiteInt16"),
    np.dtype(np.float32): ("float", "kTfLiteFloat32"),
}


@dataclass(frozen=True)
class ModelSources:
    """The generated folder; ``operators`` in execution order; the arena reserved on the board."""

    folder: Path
    operators: tuple[str, ...]
    input: TensorSpec
    output: TensorSpec
    arena_bytes: int
    host_arena_bytes: int


def arena_size(host_arena_bytes: int) -> tuple[int, int, str]:
    """(arena bytes, margin bytes, why) for the board from the host runtime's figure.

    The host runtime (x86-64) runs TFLM's reference kernels; on the board the CMSIS-NN kernels ask
    for scratch buffers the reference ones do not (e.g. an im2col buffer of 2 x in_channels x kernel
    size bytes per convolution), while 32-bit pointers make TFLM's own structures smaller.
    """
    margin = 1024 + host_arena_bytes // 8
    total = -(-(host_arena_bytes + margin) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return total, total - host_arena_bytes, ("CMSIS-NN scratch buffers the host's reference kernels do not "
                                             "request (1 KiB + 1/8 of the host figure)")


def resolver_methods(tree: TflmTree) -> dict[str, str]:
    """Builtin operator name -> the ``MicroMutableOpResolver`` method registering it, read from the tree."""
    header = tree.root / RESOLVER_HEADER
    return {op: method for method, op in _ADD_BUILTIN.findall(header.read_text())}


def write_model_sources(tflite: Path, tree: TflmTree, host_arena_bytes: int, out_dir: Path) -> ModelSources:
    """Render the model's adapter sources into ``out_dir`` (created); BuildError names a missing operator."""
    tflite = Path(tflite)
    ops = operators(tflite)
    input_spec, output_spec = tensor_specs(tflite)
    if input_spec.dtype != output_spec.dtype or input_spec.dtype not in NUMBER_TYPES:
        raise BuildError(f"{tflite}: input {input_spec.dtype} and output {output_spec.dtype}; the harness "
                         f"carries one number type, one of {sorted(str(t) for t in NUMBER_TYPES)}")
    methods = resolver_methods(tree)
    used = sorted(set(ops))
    missing = [op for op in used if op not in methods]
    if missing:
        raise BuildError(f"{tflite}: operator(s) {missing} have no MicroMutableOpResolver::Add... in the "
                         f"TFLite Micro tree {tree.root} ({RESOLVER_HEADER})")
    arena_bytes, margin, reason = arena_size(host_arena_bytes)
    ctype, tensor_type = NUMBER_TYPES[input_spec.dtype]
    context = {
        "name": tflite.stem, "dtype": str(input_spec.dtype), "ctype": ctype, "tensor_type": tensor_type,
        "input_shape": input_spec.shape, "output_shape": output_spec.shape,
        "input_size": math.prod(input_spec.shape), "output_size": math.prod(output_spec.shape),
        "input_quantization": (f"scale {input_spec.scale!r}, zero_point {input_spec.zero_point}"
                               if input_spec.quantized else ""),
        "registrations": [methods[op] for op in used], "operators": ops,
        "arena_bytes": arena_bytes, "host_arena_bytes": host_arena_bytes, "arena_margin_bytes": margin,
        "arena_margin_reason": reason,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("model.h", "number.h", "tflm_model.h"):
        (out_dir / name).write_text(_ENV.get_template(name + ".j2").render(context))
    (out_dir / "model_data.c").write_text(render_model_data(read_model(tflite), tflite.name))
    return ModelSources(out_dir, tuple(ops), input_spec, output_spec, arena_bytes, host_arena_bytes)


def render_model_data(data: bytes, source: str) -> str:
    """The flatbuffer as ``tflm_model_data[]``: const (it stays in flash), aligned as TFLM requires."""
    rows = ",\n".join("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16])
                      for i in range(0, len(data), 16))
    return (f"/* {source} ({len(data)} bytes) as a C array. Generated; do not edit. */\n"
            f"const unsigned char tflm_model_data[{len(data)}]"
            f" __attribute__((aligned({ARENA_ALIGNMENT}))) = {{\n"
            f"{rows}\n}};\n")
