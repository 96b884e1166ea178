"""Small helpers that spell Python values as C99 text."""

from __future__ import annotations

import re

import numpy as np

from codegen.errors import CodegenError
from microai.graph import Graph, Node

VALUES_PER_LINE = 12


def c_identifier(name: str) -> str:
    """``conv1/relu.0`` -> ``conv1_relu_0``: a valid C identifier fragment (never empty)."""
    ident = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z_]", "_", name)).strip("_")
    return ident or "node"


def number_ctype(precision: str) -> str:
    """C storage type of one activation/weight: float, or the smallest signed type holding the width."""
    if precision == "float32":
        return "float"
    width = int(precision[3:])
    return "int8_t" if width <= 8 else "int16_t"


#: sizeof and numpy dtype of the C types a tensor may have.
CTYPE_BYTES = {"float": 4, "int8_t": 1, "int16_t": 2}
CTYPE_DTYPES = {"float": np.float32, "int8_t": np.int8, "int16_t": np.int16}


def tensor_ctype(graph: Graph, node: Node) -> str:
    """The C type of ``node``'s output buffer: number_t's, or in the tflite scheme (where widths may
    differ per tensor) the type of its own format."""
    if graph.is_quantized and graph.scheme == "tflite":
        return {8: "int8_t", 16: "int16_t"}[node.formats["output"].width]
    return number_ctype(graph.precision)


def arena_ctype(graph: Graph) -> str:
    """The element type of the activation arena: number_t (int8_t in the tflite scheme: offsets in bytes)."""
    return "int8_t" if graph.is_quantized and graph.scheme == "tflite" else number_ctype(graph.precision)


def number_bytes(precision: str) -> int:
    """sizeof(number_t)."""
    return CTYPE_BYTES[number_ctype(precision)]


def float_literal(value: float) -> str:
    """Exact C99 hexadecimal float literal (no decimal rounding, so weights are bit-exact)."""
    v = float(np.float32(value))
    if not np.isfinite(v):
        raise CodegenError(f"non-finite value {v} cannot be written as a C constant")
    mantissa, exponent = v.hex().split("p")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}p{exponent}f"


def int_literal(value: int) -> str:
    """Decimal literal; INT32_MIN needs the subtraction form because ``2147483648`` is not an int32."""
    v = int(value)
    return "(-2147483647 - 1)" if v == -(2**31) else str(v)


def initializer(values: np.ndarray) -> str:
    """Brace initializer of a 1-D or 2-D array, wrapped at VALUES_PER_LINE values per line."""
    arr = np.asarray(values)
    if arr.ndim == 1:
        return _braces(arr, "")
    rows = arr.reshape(arr.shape[0], -1)
    return "{\n    " + ",\n    ".join(_braces(row, "    ") for row in rows) + "\n}"


def _braces(row: np.ndarray, indent: str) -> str:
    spell = float_literal if row.dtype.kind == "f" else int_literal
    lines = [", ".join(spell(v) for v in row[i:i + VALUES_PER_LINE])
             for i in range(0, len(row), VALUES_PER_LINE)]
    inner = indent + "    "
    return "{\n" + inner + (",\n" + inner).join(lines) + "\n" + indent + "}"
