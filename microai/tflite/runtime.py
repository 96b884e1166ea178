"""TFLite Micro on the host: the PyPI ``tflite-micro`` interpreter (TFLM's own reference kernels,
built for x86-64), the reference every TFLM build of this project must reproduce bit for bit.

TensorFlow's ``tf.lite.Interpreter`` is not used: its kernels differ from TFLM's.

Conventions shared with the board side (``firmware/tflm``):

- A model is a path to a ``.tflite`` file or its bytes, with one input and one output tensor.
- Data arrays of the pipeline are channels-first without batch (``(N, C, L)``, ``(N, C, H, W)``,
  see ``microai.graph.ir``); a ``.tflite`` model made by ``microai.tflite.convert`` takes
  channels-last inputs with a batch of one (``(1, L, C)``, ``(1, H, W, C)``). Functions taking
  ``x`` move the channels last unless ``channels_first=False``.
- int8 inputs are quantized as TFLite's QUANTIZE kernel does:
  ``q = clamp(round_half_away_from_zero(x / scale) + zero_point, -128, 127)``, the division in
  float32 (see :func:`quantize_input`). Whatever the rule, a board run is compared on the very
  integers :func:`run_tflm` returns as ``inputs``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from microai.tflite.capture import StderrCapture

ModelSource = str | os.PathLike | bytes | bytearray

#: First arena tried (bytes); doubled while the interpreter reports it too small, up to the limit.
ARENA_START = 1 << 20
ARENA_LIMIT = 1 << 30
_TFLITE_IDENTIFIER = b"TFL3"


class TFLMError(ValueError):
    """A model the TFLM host runtime cannot load or run; the message names the model."""


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: shape with the batch dimension, dtype, affine quantization.

    ``scale`` and ``zero_point`` are None for float tensors; real value = (q - zero_point) * scale.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None
    zero_point: int | None

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    def to_json(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype.name, "scale": self.scale,
                "zero_point": self.zero_point}


@dataclass(frozen=True)
class ArenaUse:
    """Arena bytes the interpreter's RecordingMicroAllocator reports after allocating the model.

    ``head``: non-persistent buffers (activations, scratch) planned by TFLM's memory planner;
    ``tail``: persistent structures (tensor and node structs, kernel data). These are the figures
    of the host runtime: 64-bit (pointer-holding structs twice their Cortex-M size) with TFLM's
    reference kernels. A board build with CMSIS-NN kernels requests other scratch buffers, so
    its arena must be measured on the board (``MicroInterpreter::arena_used_bytes()``); this
    report is a starting size, not a bound.
    """

    total: int
    head: int
    tail: int


@dataclass
class TFLMRun:
    """What :func:`run_tflm` fed and got, one row per vector, in the model's own dtypes.

    ``inputs``: ``(N, *input.shape[1:])`` exactly as written to the input tensor (int8 or float32,
    channels-last); ``outputs``: ``(N, *output.shape[1:])`` as read from the output tensor.
    """

    inputs: np.ndarray
    outputs: np.ndarray
    input: TensorSpec
    output: TensorSpec


# ------------------------------------------------------------------ model access
def read_model(model: ModelSource) -> bytes:
    """The flatbuffer bytes of a ``.tflite`` path or of bytes; TFLMError if it is not one."""
    if isinstance(model, (bytes, bytearray)):
        data, where = bytes(model), "model bytes"
    else:
        where = str(model)
        try:
            data = Path(model).read_bytes()
        except OSError as e:
            raise TFLMError(f"{where}: cannot read TFLite model: {e}") from e
    if len(data) < 8 or data[4:8] != _TFLITE_IDENTIFIER:
        raise TFLMError(f"{where}: not a TFLite flatbuffer (no '{_TFLITE_IDENTIFIER.decode()}' identifier)")
    return data


def _describe(model: ModelSource) -> str:
    return "model bytes" if isinstance(model, (bytes, bytearray)) else str(model)


def operators(model: ModelSource) -> list[str]:
    """Builtin operator names of the main subgraph in execution order, e.g. ``['CONV_2D', ...]``.

    Custom operators appear as ``CUSTOM:<name>``.
    """
    from tflite_micro import runtime

    obj = parse_model(model)
    names = builtin_names()
    out = []
    for op in obj.subgraphs[0].operators or []:
        code = obj.operatorCodes[op.opcodeIndex]
        builtin = runtime.get_builtin_code_from_operator_code(code)
        if builtin == runtime.schema_fb.BuiltinOperator.CUSTOM:
            out.append(f"CUSTOM:{code.customCode.decode() if code.customCode else '?'}")
        else:
            out.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return out


@cache
def builtin_names() -> dict[int, str]:
    """TFLite builtin operator code -> name (``3`` -> ``'CONV_2D'``)."""
    from tflite_micro import runtime

    ops = runtime.schema_fb.BuiltinOperator
    return {v: k for k, v in vars(ops).items() if not k.startswith("_") and isinstance(v, int)}


def parse_model(model: ModelSource):
    """The flatbuffer as the schema's object API (``ModelT`` of ``tflite_micro``'s schema)."""
    return _parse(read_model(model), _describe(model))


def _parse(data: bytes, where: str):
    from tflite_micro import runtime

    try:
        obj = runtime.convert_bytearray_to_object(bytearray(data))
    except Exception as e:  # flatbuffers raises struct.error, IndexError ... on corrupt data
        raise TFLMError(f"{where}: corrupt TFLite flatbuffer: {type(e).__name__}: {e}") from e
    if not obj.subgraphs:
        raise TFLMError(f"{where}: TFLite model without a subgraph")
    return obj


def _check_single_io(data: bytes, where: str) -> None:
    sub = _parse(data, where).subgraphs[0]
    n_in, n_out = len(sub.inputs), len(sub.outputs)
    if n_in != 1 or n_out != 1:
        raise TFLMError(f"{where}: {n_in} inputs and {n_out} outputs; MicroAI runs models with one of each")


def _interpreter(data: bytes, where: str):
    """A TFLM host interpreter with tensors allocated; the arena grows until the model fits."""
    from tflite_micro import runtime

    _check_single_io(data, where)
    size = max(ARENA_START, 10 * len(data))
    while True:
        with StderrCapture() as said:  # an arena too small is reported there, then retried larger
            try:
                return runtime.Interpreter.from_bytes(data, arena_size=size)
            except RuntimeError as e:
                error = e
        if size >= ARENA_LIMIT or "arena" not in said.text.lower():
            raise TFLMError(f"{where}: the TFLM interpreter cannot load the model with a {size}-byte arena: "
                            f"{error}; it said: {said.text.strip()[-2000:]}") from error
        size *= 2


def _spec(details: dict) -> TensorSpec:
    q = details["quantization_parameters"]
    dtype = np.dtype(details["dtype"])
    scales, zeros = np.asarray(q["scales"]), np.asarray(q["zero_points"])
    if len(scales) > 1:
        raise TFLMError(f"per-axis quantized model input/output ({len(scales)} scales) not supported")
    quantized = len(scales) == 1 and np.issubdtype(dtype, np.integer)
    return TensorSpec(tuple(int(s) for s in details["shape"]), dtype,
                      float(scales[0]) if quantized else None, int(zeros[0]) if quantized else None)


def tensor_specs(model: ModelSource) -> tuple[TensorSpec, TensorSpec]:
    """(input, output) tensor specifications as the TFLM interpreter reports them."""
    interp = _interpreter(read_model(model), _describe(model))
    return _spec(interp.get_input_details(0)), _spec(interp.get_output_details(0))


# ------------------------------------------------------------------ inputs
def to_model_layout(spec: TensorSpec, x: np.ndarray, channels_first: bool = True) -> np.ndarray:
    """Float inputs ``(N, ...)`` -> float32 ``(N, *spec.shape[1:])`` (channels moved last unless
    ``channels_first=False``); ValueError if the shapes do not match."""
    x = np.asarray(x, dtype=np.float32)
    if channels_first and x.ndim >= 3:
        x = np.moveaxis(x, 1, -1)
    if x.shape[1:] != spec.shape[1:]:
        layout = "channels-first" if channels_first else "model-layout"
        raise TFLMError(f"{layout} inputs of shape {np.asarray(x).shape} give {x.shape[1:]} per vector, "
                        f"the model's input is {spec.shape[1:]} (after its batch dimension)")
    return np.ascontiguousarray(x)


def quantize(spec: TensorSpec, x: np.ndarray) -> np.ndarray:
    """Float32 values (already in the model's layout) -> the tensor's dtype, as TFLite's QUANTIZE
    kernel: float32 division by the scale, round half away from zero, add the zero point, clamp."""
    x = np.asarray(x, dtype=np.float32)
    if not spec.quantized:
        return x.astype(spec.dtype)
    v = (x / np.float32(spec.scale)).astype(np.float64)
    rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)
    info = np.iinfo(spec.dtype)
    return np.clip(rounded + spec.zero_point, info.min, info.max).astype(spec.dtype)


def dequantize(spec: TensorSpec, q: np.ndarray) -> np.ndarray:
    """Tensor values -> real values (float64): ``(q - zero_point) * scale``; floats pass through."""
    q = np.asarray(q)
    if not spec.quantized:
        return q.astype(np.float64)
    return (q.astype(np.float64) - spec.zero_point) * spec.scale


def quantize_input(model: ModelSource, x: np.ndarray, channels_first: bool = True) -> np.ndarray:
    """The model input tensors for float inputs ``x``: layout of :func:`to_model_layout`, values of
    :func:`quantize`; ``(N, *input.shape[1:])`` in the input's dtype."""
    spec, _ = tensor_specs(model)
    return quantize(spec, to_model_layout(spec, x, channels_first))


# ------------------------------------------------------------------ running
def run_tflm(model: ModelSource, x: np.ndarray, channels_first: bool = True,
             progress: Callable[[int, int], None] | None = None) -> TFLMRun:
    """Run ``model`` with the TFLM host interpreter on every vector of ``x`` (float, batch first).

    Each vector is one ``invoke()`` on the model's batch-1 input, in order, with one interpreter.
    Returns the tensors fed and read in the model's dtypes (see :class:`TFLMRun`).
    ``progress(done, total)`` is called every 500 vectors and at the end.
    """
    data = read_model(model)
    where = _describe(model)
    interp = _interpreter(data, where)
    in_spec, out_spec = _spec(interp.get_input_details(0)), _spec(interp.get_output_details(0))
    if in_spec.shape[0] != 1:
        raise TFLMError(f"{where}: input batch dimension is {in_spec.shape[0]}, expected 1")
    inputs = quantize(in_spec, to_model_layout(in_spec, x, channels_first))
    outputs = np.empty((len(inputs), *out_spec.shape[1:]), dtype=out_spec.dtype)
    for i in range(len(inputs)):
        interp.set_input(inputs[i:i + 1], 0)
        interp.invoke()
        outputs[i] = interp.get_output(0)[0]
        if progress is not None and ((i + 1) % 500 == 0 or i + 1 == len(inputs)):
            progress(i + 1, len(inputs))
    return TFLMRun(inputs, outputs, in_spec, out_spec)


def predict(run: TFLMRun) -> np.ndarray:
    """Class per vector: argmax of the raw outputs (ties -> lowest index, as a C loop)."""
    return np.argmax(run.outputs.reshape(len(run.outputs), -1), axis=1)


def accuracy(model: ModelSource, x: np.ndarray, y: np.ndarray, channels_first: bool = True) -> float:
    """Fraction of vectors whose predicted class equals the integer label."""
    y = np.asarray(y)
    if y.shape != (len(x),) or len(y) == 0:
        raise TFLMError(f"labels of shape {y.shape} do not match {len(x)} inputs")
    return float(np.mean(predict(run_tflm(model, x, channels_first)) == y))


# ------------------------------------------------------------------ memory
_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def arena_bytes(model: ModelSource) -> ArenaUse:
    """Arena the TFLM interpreter uses for ``model`` (its RecordingMicroAllocator's report)."""
    interp = _interpreter(read_model(model), _describe(model))
    with StderrCapture() as printed:  # the C++ runtime prints the report on file descriptor 2
        interp.print_allocations()
    report = {k: int(v) for k, v in _ARENA_LINE.findall(printed.text)}
    if set(report) != {"total", "head", "tail"}:
        raise TFLMError(f"{_describe(model)}: the interpreter printed no arena report")
    return ArenaUse(report["total"], report["head"], report["tail"])

