"""Reference executor: runs a graph in numpy, vectorised over a batch.

Float32 graphs run in float32. Quantized graphs run the exact integer arithmetic of
``docs/arithmetic.md`` (the contract the generated C reproduces bit for bit): int64 numpy
arrays hold the values, every ``long_number_t`` (int32) intermediate is range-checked, and an
overflow raises :class:`AccumulatorOverflow` naming the layer instead of wrapping.

Each operator's float and integer semantics live in :mod:`microai.ops`; this module drives them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microai import ops
from microai.graph.ir import AffineFormat, Graph, GraphError, Node
from microai.ops import tflite
from microai.ops.pow2 import LONG_MAX, LONG_MIN, AccumulatorOverflow, fmt, shift_right
from microai.quant.formats import dequantize, quantize_array

DEFAULT_BATCH = 1024

__all__ = ["DEFAULT_BATCH", "LONG_MAX", "LONG_MIN", "AccumulatorOverflow", "accumulator_bound", "accuracy",
           "dequantize_output", "predict", "quantize_input", "run", "run_all", "run_int", "shift_right"]


# ------------------------------------------------------------------ public entry points
def run(graph: Graph, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Output of ``graph`` for the float inputs ``x`` (batch first).

    Float graphs return float32; quantized graphs convert ``x`` to the Input node's format
    (``graph.quant_rounding``) and return the integer outputs as int64.
    """
    if not graph.is_quantized:
        return _batched(graph, _check_input(graph, x).astype(np.float32), batch_size)
    return run_int(graph, quantize_input(graph, x), batch_size)


def run_int(graph: Graph, xq: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Integer outputs (int64) of a quantized graph for already-quantized integer inputs."""
    return _batched(graph, _integer_input(graph, xq), batch_size)


def run_all(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's output for one batch, e.g. to compare another backend layer by layer.

    Float graphs: float32 values. Quantized graphs: int64 values; ``x`` may be float (converted
    as in ``run``) or already-quantized integers (as in ``run_int``).
    """
    if not graph.is_quantized:
        return _evaluate(graph, _check_input(graph, x).astype(np.float32), _float_op)
    x = np.asarray(x)
    xq = x if np.issubdtype(x.dtype, np.integer) else quantize_input(graph, x)
    return _evaluate(graph, _integer_input(graph, xq), _integer_op)


def quantize_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float inputs -> integers in the Input node's format: pow2 graphs with the graph's ``quant_rounding``,
    tflite graphs as TFLite's QUANTIZE (float32 division by the scale, halves away from zero, zero point)."""
    _require_quantized(graph)
    f = fmt(graph.input, "output")
    if isinstance(f, AffineFormat):
        return tflite.quantize_real(_check_input(graph, x), f)
    return quantize_array(_check_input(graph, x), f, graph.quant_rounding)


def dequantize_output(graph: Graph, y: np.ndarray) -> np.ndarray:
    """Integer outputs of a quantized graph -> real values (float64)."""
    _require_quantized(graph)
    f = fmt(graph.node(graph.output), "output")
    return tflite.dequantize(y, f) if isinstance(f, AffineFormat) else dequantize(y, f)


def predict(graph: Graph, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Predicted class per input: argmax of the output (ties -> lowest index, as C loops)."""
    y = run(graph, x, batch_size)
    return np.argmax(y.reshape(len(y), -1), axis=1)


def accuracy(graph: Graph, x: np.ndarray, y: np.ndarray, batch_size: int = DEFAULT_BATCH) -> float:
    """Fraction of inputs whose predicted class equals the integer label in ``y``."""
    y = np.asarray(y)
    if y.shape != (len(x),):
        raise GraphError(f"labels of shape {y.shape} do not match {len(x)} inputs")
    if len(y) == 0:
        raise GraphError("accuracy of an empty set is undefined")
    return float(np.mean(predict(graph, x, batch_size) == y))


def accumulator_bound(graph: Graph, node: Node) -> int:
    """Worst-case magnitude of any int32 intermediate of ``node`` over all inputs of its formats.

    Uses the node's integer weights and assumes every input can reach ``-2**(w-1)``; codegen
    compares it with ``2**31 - 1``. Operators without a ``long_number_t`` accumulator give 0.
    """
    _require_quantized(graph)
    return ops.integer(graph, node).accumulator_bound(graph, node)


# ------------------------------------------------------------------ evaluation driver
OpFn = Callable[[Graph, Node, list[np.ndarray]], np.ndarray]


def _batched(graph: Graph, x: np.ndarray, batch_size: int) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    op = _integer_op if graph.is_quantized else _float_op
    parts = [_evaluate(graph, x[i:i + batch_size], op, keep=False)[graph.output]
             for i in range(0, len(x), batch_size)]
    if not parts:
        return np.zeros((0, *graph.node(graph.output).shape), dtype=x.dtype)
    return np.concatenate(parts)


def _evaluate(graph: Graph, x: np.ndarray, op: OpFn, keep: bool = True) -> dict[str, np.ndarray]:
    """Run all nodes; with ``keep=False`` drop each value after its last consumer to save memory."""
    last_use = {i: k for k, n in enumerate(graph.nodes) for i in n.inputs}
    values: dict[str, np.ndarray] = {}
    for k, node in enumerate(graph.nodes):
        act = node.attrs.get("activation")
        if act is not None and (act not in _activations(graph) or not ops.of(node).relu_fusable):
            raise GraphError(f"{node.describe()}: fused activation '{act}' not supported "
                             f"(only {_activations(graph)} on {ops.relu_fusable()})")
        out = x if node.op == "Input" else op(graph, node, [values[i] for i in node.inputs])
        if op is _float_op and act is not None:
            zero, six = np.float32(0), np.float32(6)
            out = np.maximum(out, zero) if act == "relu" else np.clip(out, zero, six)
        elif act == "relu" and not ops.integer(graph, node).applies_activation:
            out = np.maximum(out, 0)
        values[node.name] = out
        if not keep:
            for i in node.inputs:
                if last_use[i] == k and i != graph.output:
                    del values[i]
    return values


def _activations(graph: Graph) -> tuple[str, ...]:
    """Fused activations a graph may carry: ReLU; ReLU6 in float graphs and in the tflite scheme (an output
    clamp there), which TFLite models use."""
    return ("relu",) if graph.is_quantized and graph.scheme != tflite.TFLITE else tflite.ACTIVATIONS


def _check_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    expected = graph.input.shape
    if x.ndim != len(expected) + 1 or x.shape[1:] != expected:
        raise GraphError(f"input batch of shape {x.shape} does not match {graph.input.describe()} "
                         f"of shape {expected} (batch dimension first)")
    return x


def _integer_input(graph: Graph, xq: np.ndarray) -> np.ndarray:
    """Checked int64 copy of quantized inputs: integer dtype, in the Input node's w-bit range."""
    _require_quantized(graph)
    xq = _check_input(graph, xq)
    if not np.issubdtype(xq.dtype, np.integer):
        raise GraphError(f"run_int expects integer inputs, got {xq.dtype} (use run() for float inputs)")
    f = fmt(graph.input, "output")
    if xq.size and (xq.min() < f.min_int or xq.max() > f.max_int):
        raise GraphError(f"input values outside the {f.width}-bit range of {graph.input.describe()}")
    return xq.astype(np.int64)


def _require_quantized(graph: Graph) -> None:
    if not graph.is_quantized:
        raise GraphError("this operation needs a quantized graph, got a float32 graph")


def _float_op(graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return ops.of(node).run_float(node, ins)


def _integer_op(graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    return ops.integer(graph, node).run(graph, node, ins)
