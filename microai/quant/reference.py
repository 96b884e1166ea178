"""Reference executor: runs a graph in numpy, vectorised over a batch.

Float32 graphs run in float32. Quantized graphs run the exact integer arithmetic of
``docs/arithmetic.md`` (the contract the generated C reproduces bit for bit): int64 numpy
arrays hold the values, every ``long_number_t`` (int32) intermediate is range-checked, and an
overflow raises :class:`AccumulatorOverflow` naming the layer instead of wrapping.

Integer convolutions are computed as float64 matrix products: every product of two w-bit
integers (w <= 16) is below 2**30 and every partial sum stays far below 2**53, so the BLAS
result is the exact integer sum.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from microai.graph.ir import Graph, GraphError, Node, QFormat
from microai.quant.formats import dequantize, quantize_array, saturate

LONG_MIN = -(1 << 31)
LONG_MAX = (1 << 31) - 1
DEFAULT_BATCH = 1024

#: Operators that may carry ``attrs["activation"] == "relu"`` (set by ``passes.fuse_relu``).
FUSABLE = ("Conv1D", "Conv2D", "Dense", "MaxPool1D", "MaxPool2D", "Add", "Scale")
#: Operators whose integer values pass unchanged (output format = input format).
PASS_THROUGH = ("MaxPool1D", "MaxPool2D", "ReLU", "Flatten", "ZeroPadding1D", "ZeroPadding2D", "Identity")


class AccumulatorOverflow(GraphError):
    """An int32 ``long_number_t`` intermediate left its range; the message names the layer."""


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
    return _evaluate(graph, _integer_input(graph, xq), _int_op)


def quantize_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float inputs -> integers in the Input node's format with the graph's ``quant_rounding``."""
    _require_quantized(graph)
    return quantize_array(_check_input(graph, x), _fmt(graph.input, "output"), graph.quant_rounding)


def dequantize_output(graph: Graph, y: np.ndarray) -> np.ndarray:
    """Integer outputs of a quantized graph -> real values (float64)."""
    _require_quantized(graph)
    return dequantize(y, _fmt(graph.node(graph.output), "output"))


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


def shift_right(v: np.ndarray, s: int, rounding: str) -> np.ndarray:
    """docs/arithmetic.md ``shift_right`` for ``s >= 0`` (no range check; see ``_requant``)."""
    if s < 0:
        raise ValueError(f"shift_right needs s >= 0, got {s}")
    if s == 0:
        return v
    s = min(s, 62)  # the int64 values are far below 2**62, so larger shifts give the same result
    if rounding == "nearest":
        v = v + (1 << (s - 1))
    return v >> s


def accumulator_bound(graph: Graph, node: Node) -> int:
    """Worst-case magnitude of any int32 intermediate of ``node`` over all inputs of its formats.

    Uses the node's integer weights and assumes every input can reach ``-2**(w-1)``; codegen
    compares it with ``2**31 - 1``. Operators without a ``long_number_t`` accumulator give 0.
    """
    _require_quantized(graph)
    full = 1 << (graph.width - 1)
    if node.op in ("Conv1D", "Conv2D", "Dense", "Scale"):
        n_x = _input_frac(graph, node)
        w_key = "scale" if node.op == "Scale" else "kernel"
        n_acc = n_x + _fmt(node, w_key).frac
        w = np.abs(node.weights[w_key].astype(np.int64).reshape(len(node.weights[w_key]), -1))
        bias = _align(node.weights["bias"].astype(np.int64), _fmt(node, "bias").frac, n_acc, graph.rounding)
        acc = int(np.max(np.abs(bias) + w.sum(axis=1) * full))
        aligned = int(np.max(np.abs(bias)))
    elif node.op == "Add":
        fracs = [_fmt(graph.node(i), "output").frac for i in node.inputs]
        n_acc = max(fracs)
        acc = aligned = sum(full << (n_acc - f) for f in fracs)
    elif node.op in ("AvgPool1D", "AvgPool2D"):
        window = int(np.prod(node.attrs["pool_size"]))
        return window * full + (window // 2 if graph.rounding == "nearest" else 0)
    else:
        return 0
    shift = n_acc - _fmt(node, "output").frac
    if shift < 0:
        return max(aligned, acc << -shift)
    return acc + ((1 << (shift - 1)) if graph.rounding == "nearest" and shift > 0 else 0)


# ------------------------------------------------------------------ evaluation driver
OpFn = Callable[[Graph, Node, list[np.ndarray]], np.ndarray]


def _batched(graph: Graph, x: np.ndarray, batch_size: int) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    op = _int_op if graph.is_quantized else _float_op
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
        if act is not None and (act != "relu" or node.op not in FUSABLE):
            raise GraphError(f"{node.describe()}: fused activation '{act}' not supported "
                             f"(only 'relu' on {FUSABLE})")
        out = x if node.op == "Input" else op(graph, node, [values[i] for i in node.inputs])
        values[node.name] = np.maximum(out, 0) if act == "relu" else out
        if not keep:
            for i in node.inputs:
                if last_use[i] == k and i != graph.output:
                    del values[i]
    return values


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
    fmt = _fmt(graph.input, "output")
    if xq.size and (xq.min() < fmt.min_int or xq.max() > fmt.max_int):
        raise GraphError(f"input values outside the {fmt.width}-bit range of {graph.input.describe()}")
    return xq.astype(np.int64)


def _require_quantized(graph: Graph) -> None:
    if not graph.is_quantized:
        raise GraphError("this operation needs a quantized graph, got a float32 graph")


def _fmt(node: Node, key: str) -> QFormat:
    try:
        return node.formats[key]
    except KeyError:
        raise GraphError(f"{node.describe()}: no '{key}' number format recorded (not quantized?)") from None


def _input_frac(graph: Graph, node: Node) -> int:
    return _fmt(graph.node(node.inputs[0]), "output").frac


# ------------------------------------------------------------------ shared geometry
def _windows(x: np.ndarray, kernel: list[int], stride: list[int]) -> np.ndarray:
    """(N, C, *S) -> (N, C, *out, *kernel) strided view of the sliding windows."""
    dims = len(kernel)
    axes = tuple(range(2, 2 + dims))
    w = sliding_window_view(x, kernel, axis=axes)
    return w[(slice(None), slice(None), *[slice(None, None, s) for s in stride])]


def _spatial(node: Node, key: str, default: list[int] | None = None) -> list[int]:
    dims = 1 if node.op.endswith("1D") else 2
    v = node.attrs.get(key, default)
    return [int(v)] * dims if isinstance(v, int) else [int(i) for i in v]


def _conv_sum(node: Node, x: np.ndarray, kernel: np.ndarray, dtype: type) -> np.ndarray:
    """Sum of products of a Conv/Dense without bias, computed in ``dtype``; (N, out, *spatial)."""
    if node.op == "Dense":
        return x.astype(dtype) @ kernel.astype(dtype).T
    dims = kernel.ndim - 2
    pad = _spatial(node, "padding", [0] * 2 * dims)
    x = np.pad(x.astype(dtype), [(0, 0), (0, 0)] + [(pad[2 * d], pad[2 * d + 1]) for d in range(dims)])
    win = _windows(x, list(kernel.shape[2:]), _spatial(node, "stride", 1))
    n, c, *out = win.shape[:2 + dims]
    cols = np.moveaxis(win, 1, 1 + dims).reshape(n * int(np.prod(out)), -1)
    y = cols @ kernel.astype(dtype).reshape(len(kernel), -1).T
    return np.moveaxis(y.reshape(n, *out, len(kernel)), -1, 1)


def _pool_windows(node: Node, x: np.ndarray) -> np.ndarray:
    pool = _spatial(node, "pool_size")
    win = _windows(x, pool, _spatial(node, "stride", pool))
    return win.reshape(*win.shape[:-len(pool)], -1)


def _zero_pad(node: Node, x: np.ndarray) -> np.ndarray:
    pad = node.attrs["padding"]
    dims = x.ndim - 2
    return np.pad(x, [(0, 0), (0, 0)] + [(pad[2 * d], pad[2 * d + 1]) for d in range(dims)])


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcast a (C,) parameter over (N, C, *spatial)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# ------------------------------------------------------------------ float32 operators
def _float_op(graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    op = node.op
    x = ins[0]
    if op in ("Conv1D", "Conv2D", "Dense"):
        y = _conv_sum(node, x, node.weights["kernel"], np.float32)
        return y + _per_channel(node.weights["bias"].astype(np.float32), y.ndim)
    if op in ("MaxPool1D", "MaxPool2D"):
        return _pool_windows(node, x).max(axis=-1)
    if op in ("AvgPool1D", "AvgPool2D"):
        return _pool_windows(node, x).mean(axis=-1, dtype=np.float32)
    if op == "Add":
        out = ins[0]
        for other in ins[1:]:
            out = out + other
        return out
    if op == "ReLU":
        return np.maximum(x, np.float32(0))
    if op == "BatchNorm":
        w = node.weights
        inv = (w["gamma"] / np.sqrt(w["var"] + np.float32(node.attrs.get("eps", 1e-5)))).astype(np.float32)
        shift = (w["beta"] - w["mean"] * inv).astype(np.float32)
        return x * _per_channel(inv, x.ndim) + _per_channel(shift, x.ndim)
    if op == "Scale":
        s, b = node.weights["scale"].astype(np.float32), node.weights["bias"].astype(np.float32)
        return x * _per_channel(s, x.ndim) + _per_channel(b, x.ndim)
    if op == "Flatten":
        return x.reshape(len(x), -1)
    if op in ("ZeroPadding1D", "ZeroPadding2D"):
        return _zero_pad(node, x)
    if op == "Softmax":
        return _softmax(x)
    if op == "Identity":
        return x
    raise GraphError(f"{node.describe()}: no float implementation")


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------ integer operators
def _check_long(node: Node, v: np.ndarray, what: str) -> np.ndarray:
    if v.size:
        lo, hi = int(v.min()), int(v.max())
        if lo < LONG_MIN or hi > LONG_MAX:
            bad = lo if lo < LONG_MIN else hi
            raise AccumulatorOverflow(f"{node.describe()}: {what} reaches {bad}, outside the int32 "
                                      f"long_number_t range [{LONG_MIN}, {LONG_MAX}]")
    return v


def _shift_left(node: Node, v: np.ndarray, s: int, what: str) -> np.ndarray:
    if s >= 32 and np.any(v):
        raise AccumulatorOverflow(f"{node.describe()}: {what} shifted left by {s} bits leaves int32")
    return _check_long(node, v << s if s < 32 else v, f"{what} << {s}")


def _align(b: np.ndarray, n_b: int, n_acc: int, rounding: str, node: Node | None = None) -> np.ndarray:
    """docs/arithmetic.md ``align(b, n_b -> n_acc)``; range-checked when ``node`` is given."""
    if n_acc >= n_b:
        return _shift_left(node, b, n_acc - n_b, "aligned bias") if node is not None else b << (n_acc - n_b)
    return shift_right(b, n_b - n_acc, rounding)


def _requant_shift(node: Node, n_acc: int) -> int:
    """``n_acc - n_out``; checked before any data is touched, since it depends on the formats only."""
    s = n_acc - _fmt(node, "output").frac
    if abs(s) >= 32:
        raise GraphError(f"{node.describe()}: requantization shift of {s} bits; an int32 long_number_t "
                         f"shift must stay below 32 (input, weight and output formats too far apart)")
    return s


def _requant(graph: Graph, node: Node, acc: np.ndarray, s: int) -> np.ndarray:
    """``sat_w(shift_right(acc, s))`` with every int32 intermediate checked; ``s`` from ``_requant_shift``."""
    _check_long(node, acc, "accumulator")
    if s < 0:
        acc = _shift_left(node, acc, -s, "accumulator")
    elif s > 0:
        if graph.rounding == "nearest":
            _check_long(node, acc + (1 << (s - 1)), "accumulator + rounding constant")
        acc = shift_right(acc, s, graph.rounding)
    return saturate(acc, graph.width)


def _int_op(graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
    op = node.op
    x = ins[0]
    if op in PASS_THROUGH:
        if _fmt(node, "output") != _fmt(graph.node(node.inputs[0]), "output"):
            raise GraphError(f"{node.describe()}: output format {_fmt(node, 'output')} differs from its "
                             f"input's; {op} must keep the input format")
        if op == "ReLU":
            return np.maximum(x, 0)
        if op == "Flatten":
            return x.reshape(len(x), -1)
        if op in ("ZeroPadding1D", "ZeroPadding2D"):
            return _zero_pad(node, x)
        if op in ("MaxPool1D", "MaxPool2D"):
            return _pool_windows(node, x).max(axis=-1)
        return x
    if op in ("Conv1D", "Conv2D", "Dense", "Scale"):
        w_key = "scale" if op == "Scale" else "kernel"
        n_acc = _input_frac(graph, node) + _fmt(node, w_key).frac
        s = _requant_shift(node, n_acc)
        w = node.weights[w_key].astype(np.int64)
        if op == "Scale":
            y = x * _per_channel(w, x.ndim)
        else:
            y = np.rint(_conv_sum(node, x, w, np.float64)).astype(np.int64)
        bias = _align(node.weights["bias"].astype(np.int64), _fmt(node, "bias").frac, n_acc,
                      graph.rounding, node)
        return _requant(graph, node, y + _per_channel(bias, y.ndim), s)
    if op == "Add":
        fracs = [_fmt(graph.node(i), "output").frac for i in node.inputs]
        n_acc = max(fracs)
        s = _requant_shift(node, n_acc)
        acc = sum(_shift_left(node, v, n_acc - f, f"operand '{i}'")
                  for v, f, i in zip(ins, fracs, node.inputs, strict=True))
        return _requant(graph, node, acc, s)
    if op in ("AvgPool1D", "AvgPool2D"):
        if _fmt(node, "output") != _fmt(graph.node(node.inputs[0]), "output"):
            raise GraphError(f"{node.describe()}: AvgPool must keep its input format")
        win = _pool_windows(node, x)
        total = _check_long(node, win.sum(axis=-1), "window sum")
        count = win.shape[-1]
        if graph.rounding == "nearest":
            total = total + np.sign(total) * (count // 2)
        quotient = np.abs(total) // count * np.sign(total)  # C division truncates towards zero
        return saturate(quotient, graph.width)
    if op == "Softmax":
        real = x.astype(np.float32) * np.float32(2.0 ** -_input_frac(graph, node))
        return quantize_array(_softmax(real), _fmt(node, "output"), "nearest")
    if op == "BatchNorm":
        raise GraphError(f"{node.describe()}: BatchNorm cannot run in integer arithmetic; "
                         f"convert it with microai.graph.passes.batchnorm_to_scale before quantizing")
    raise GraphError(f"{node.describe()}: no integer implementation")
