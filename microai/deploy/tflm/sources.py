"""A ``.tflite`` model -> the sources the TFLM adapter (firmware/tflm) is built with.

``write_model_sources`` writes, into one folder: ``model_data.c`` (the flatbuffer as an aligned C
array), ``model.h`` / ``number.h`` (the harness's model interface) and ``tflm_model.h`` (arena size,
an op resolver registering only the model's operators, the operators in execution order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from microai.deploy.errors import BuildError
from microai.deploy.tflm.model_file import TENSOR_TYPES, TfliteFacts, read_tflite
from microai.deploy.tflm.tree import TflmTree
from microai.deploy.toolchain import FIRMWARE

ADAPTER_DIR = FIRMWARE / "tflm"
RESOLVER_HEADER = "tensorflow/lite/micro/micro_mutable_op_resolver.h"
_ADD_BUILTIN = re.compile(r"TfLiteStatus\s+(Add\w+)\s*\((?:[^()]|\([^()]*\))*\)\s*\{\s*"
                          r"return\s+AddBuiltin\(\s*BuiltinOperator_(\w+)")
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(ADAPTER_DIR), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
#: TFLM's arena alignment: buffers start on 16-byte boundaries.
ARENA_ALIGNMENT = 16


@dataclass(frozen=True)
class ModelSources:
    folder: Path
    facts: TfliteFacts
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
    facts = read_tflite(tflite)
    if facts.input.dtype != facts.output.dtype:
        raise BuildError(f"{tflite}: input is {facts.input.dtype} but output is {facts.output.dtype}; the "
                         "harness carries one number type (convert with the same inference input and output type)")
    methods = resolver_methods(tree)
    missing = [op for op in facts.used if op not in methods]
    if missing:
        raise BuildError(f"{tflite}: operator(s) {missing} have no MicroMutableOpResolver::Add... in the "
                         f"TFLite Micro tree {tree.root} ({RESOLVER_HEADER})")
    arena_bytes, margin, reason = arena_size(host_arena_bytes)
    dtype = facts.input.dtype
    _, ctype, tensor_type = next(t for t in TENSOR_TYPES.values() if t[0] == dtype)
    quant = facts.input
    context = {
        "name": facts.name, "dtype": str(dtype), "ctype": ctype, "tensor_type": tensor_type,
        "input_shape": facts.input.shape, "output_shape": facts.output.shape,
        "input_size": facts.input.size, "output_size": facts.output.size,
        "input_quantization": (f"scale {quant.scale!r}, zero_point {quant.zero_point}"
                               if quant.scale is not None else ""),
        "registrations": [methods[op] for op in facts.used], "operators": facts.operators,
        "arena_bytes": arena_bytes, "host_arena_bytes": host_arena_bytes, "arena_margin_bytes": margin,
        "arena_margin_reason": reason,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("model.h", "number.h", "tflm_model.h"):
        (out_dir / name).write_text(_ENV.get_template(name + ".j2").render(context))
    (out_dir / "model_data.c").write_text(render_model_data(tflite.read_bytes(), tflite.name))
    return ModelSources(out_dir, facts, arena_bytes, host_arena_bytes)


def render_model_data(data: bytes, source: str) -> str:
    """The flatbuffer as ``tflm_model_data[]``: const (it stays in flash), aligned as TFLM requires."""
    rows = ",\n".join("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16))
    return (f"/* {source} ({len(data)} bytes) as a C array. Generated; do not edit. */\n"
            f"const unsigned char tflm_model_data[{len(data)}] __attribute__((aligned({ARENA_ALIGNMENT}))) = {{\n"
            f"{rows}\n}};\n")
