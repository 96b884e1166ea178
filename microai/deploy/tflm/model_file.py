"""What the on-board build needs to know of a ``.tflite`` model: its operators and its I/O tensors.

Read with the flatbuffer schema that ships with the ``tflite-micro`` runtime (no TensorFlow import).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

from microai.deploy.errors import BuildError

FILE_IDENTIFIER = b"TFL3"
#: TFLite tensor types the harness's number_t can carry: type -> (numpy dtype, C type, TfLiteType).
TENSOR_TYPES = {
    schema.TensorType.INT8: (np.dtype(np.int8), "int8_t", "kTfLiteInt8"),
    schema.TensorType.INT16: (np.dtype(np.int16), "int16_t", "kTfLiteInt16"),
    schema.TensorType.FLOAT32: (np.dtype(np.float32), "float", "kTfLiteFloat32"),
}
_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


@dataclass(frozen=True)
class TensorFacts:
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float | None  # per-tensor quantization, None for float tensors
    zero_point: int | None

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class TfliteFacts:
    """``operators``: builtin operator names of the main subgraph in execution order;
    ``used``: every builtin operator of every subgraph, sorted (what the op resolver must hold)."""

    name: str
    operators: tuple[str, ...]
    used: tuple[str, ...]
    input: TensorFacts
    output: TensorFacts


def read_tflite(path: Path) -> TfliteFacts:
    """Operators and the single input/output tensor of a ``.tflite`` file; BuildError names the problem."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
        raise BuildError(f"{path}: not a TFLite flatbuffer (no '{FILE_IDENTIFIER.decode()}' identifier)")
    model = schema.Model.GetRootAs(data, 0)
    codes = [_operator_name(path, model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    if model.SubgraphsLength() < 1:
        raise BuildError(f"{path}: the model has no subgraph")
    used: set[str] = set()
    for s in range(model.SubgraphsLength()):
        sub = model.Subgraphs(s)
        used.update(codes[sub.Operators(i).OpcodeIndex()] for i in range(sub.OperatorsLength()))
    main = model.Subgraphs(0)
    if main.InputsLength() != 1 or main.OutputsLength() != 1:
        raise BuildError(f"{path}: the harness runs models with one input and one output tensor, this one has "
                         f"{main.InputsLength()} inputs and {main.OutputsLength()} outputs")
    operators = tuple(codes[main.Operators(i).OpcodeIndex()] for i in range(main.OperatorsLength()))
    return TfliteFacts(path.stem, operators, tuple(sorted(used)), _tensor(path, main.Tensors(main.Inputs(0))),
                       _tensor(path, main.Tensors(main.Outputs(0))))


def _operator_name(path: Path, code: schema.OperatorCode) -> str:
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        raise BuildError(f"{path}: custom operator {code.CustomCode().decode()!r} is not supported "
                         "(only TFLite builtin operators are registered)")
    try:
        return _BUILTIN_NAMES[builtin]
    except KeyError:
        raise BuildError(f"{path}: builtin operator code {builtin} is unknown to this TFLite schema") from None


def _tensor(path: Path, tensor: schema.Tensor) -> TensorFacts:
    name = tensor.Name().decode()
    if tensor.Type() not in TENSOR_TYPES:
        raise BuildError(f"{path}: tensor '{name}' has TFLite type {tensor.Type()}; the harness handles "
                         f"{sorted(str(t[0]) for t in TENSOR_TYPES.values())}")
    q = tensor.Quantization()
    scale = zero_point = None
    if q is not None and q.ScaleLength() > 0:
        if q.ScaleLength() != 1:
            raise BuildError(f"{path}: tensor '{name}' is quantized per channel; model I/O must be per tensor")
        scale, zero_point = float(q.Scale(0)), int(q.ZeroPoint(0))
    return TensorFacts(tuple(int(d) for d in tensor.ShapeAsNumpy()), TENSOR_TYPES[tensor.Type()][0], scale,
                       zero_point)
