"""Graph IR -> a list of C layers: geometry, re-laid-out weights, shifts and static checks.

Everything the templates need is computed here as plain numbers, so the templates only spell
loops. Tensors are channels-last in memory (see :mod:`codegen.layout`); Flatten and Identity
cost nothing (their output is their input's buffer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codegen.ctext import c_identifier, number_ctype
from codegen.errors import CodegenError
from codegen.layout import memory_order
from microai.graph import Graph, Node, QFormat
from microai.quant.reference import accumulator_bound, shift_right

LONG_MAX = (1 << 31) - 1
#: Operators whose output is their input's buffer (no C function, no copy).
ALIASES = ("Flatten", "Identity")
#: Operators that may carry a fused ``attrs["activation"] == "relu"``.
FUSABLE = ("Conv1D", "Conv2D", "Dense", "MaxPool1D", "MaxPool2D", "Add", "Scale")


@dataclass
class CArray:
    """A ``static const`` array of one layer (lands in flash)."""

    name: str
    ctype: str  # "number_t" or "long_number_t"
    values: np.ndarray  # 1-D, or 2-D emitted as [rows][cols]

    @property
    def dims(self) -> str:
        return "".join(f"[{d}]" for d in self.values.shape)


@dataclass
class Layer:
    """One C function ``layer_<index>_<name>`` computing one node."""

    index: int
    node: Node
    template: str
    inputs: list[str]  # buffer owners read, in operand order
    params: dict[str, Any]
    arrays: list[CArray] = field(default_factory=list)

    @property
    def function(self) -> str:
        return f"layer_{self.index}_{c_identifier(self.node.name)}"


@dataclass
class Lowered:
    """The layers in execution order plus, per node, its buffer owner and memory layout shape."""

    layers: list[Layer]
    owner: dict[str, str]
    layout: dict[str, tuple[int, ...]]


def lower(graph: Graph) -> Lowered:
    """Turn a validated, simplified graph into C layers; raise CodegenError naming the node."""
    nodes = _live_nodes(graph)
    ctx = _Context(graph)
    layers: list[Layer] = []
    for index, node in enumerate(graph.nodes):
        if node.name not in nodes:
            continue
        _check_activation(node)
        if node.op == "Input":
            ctx.owner[node.name] = node.name
            ctx.layout[node.name] = node.shape
        elif node.op in ALIASES:
            src = node.inputs[0]
            ctx.owner[node.name] = ctx.owner[src]
            ctx.layout[node.name] = ctx.layout[src]
            ctx.require_same_format(node)
        else:
            lowerer = _LOWERERS.get(node.op)
            if lowerer is None:
                raise CodegenError(f"{node.describe()}: operator not supported by the C generator "
                                   f"(supported: {sorted([*_LOWERERS, *ALIASES, 'Input'])}; "
                                   f"BatchNorm must be folded by microai.graph.passes first)")
            ctx.owner[node.name] = node.name
            ctx.layout[node.name] = node.shape
            layer = lowerer(ctx, node)
            layer.index = index
            layer.inputs = [ctx.owner[i] for i in node.inputs]
            layers.append(layer)
    if not layers:
        raise CodegenError(f"graph output '{graph.output}' is the input itself: there is nothing to compute")
    if ctx.owner[graph.output] != layers[-1].node.name:
        raise CodegenError(f"graph output '{graph.output}' is not computed by the last layer")
    return Lowered(layers, ctx.owner, ctx.layout)


def _live_nodes(graph: Graph) -> set[str]:
    """Names of the nodes the output depends on (others would be dead code)."""
    live, todo = set(), [graph.output]
    while todo:
        name = todo.pop()
        if name not in live:
            live.add(name)
            todo.extend(graph.node(name).inputs)
    return live


def _check_activation(node: Node) -> None:
    act = node.attrs.get("activation")
    if act is not None and (act != "relu" or node.op not in FUSABLE):
        raise CodegenError(f"{node.describe()}: fused activation '{act}' not supported "
                           f"(only 'relu' on {FUSABLE})")


class _Context:
    """Per-graph facts the lowerers share: formats, buffer owners, layouts."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.owner: dict[str, str] = {}
        self.layout: dict[str, tuple[int, ...]] = {}

    @property
    def integer(self) -> bool:
        return self.graph.is_quantized

    @property
    def widen(self) -> bool:
        """int8 storage: convolutions widen each input window to int16 once (number.h ``number_widen``)
        so that the inner loop of every output channel only unpacks weights; weights stay int8 in flash."""
        return self.integer and number_ctype(self.graph.precision) == "int8_t"

    def fmt(self, node: Node, key: str = "output") -> QFormat:
        try:
            fmt = node.formats[key]
        except KeyError:
            raise CodegenError(f"{node.describe()}: no '{key}' number format recorded") from None
        if fmt.width != self.graph.width:
            raise CodegenError(f"{node.describe()}: '{key}' is {fmt.width}-bit in a "
                               f"{self.graph.precision} graph")
        return fmt

    def input_fmt(self, node: Node, i: int = 0) -> QFormat:
        return self.fmt(self.graph.node(node.inputs[i]))

    def input_shape(self, node: Node, i: int = 0) -> tuple[int, ...]:
        return self.graph.node(node.inputs[i]).shape

    def require_same_format(self, node: Node) -> None:
        if self.integer and self.fmt(node) != self.input_fmt(node):
            raise CodegenError(f"{node.describe()}: output format {self.fmt(node)} differs from its input's "
                               f"{self.input_fmt(node)}; {node.op} must keep the input format")

    def require_natural_layout(self, node: Node) -> None:
        src = node.inputs[0]
        if self.layout[src] != self.graph.node(src).shape:
            raise CodegenError(f"{node.describe()}: input '{src}' is a flattened tensor; {node.op} needs it "
                               f"in its own shape")

    def check_bound(self, node: Node) -> None:
        if not self.integer:
            return
        bound = accumulator_bound(self.graph, node)
        if bound > LONG_MAX:
            raise CodegenError(f"{node.describe()}: worst-case accumulator {bound} exceeds the int32 "
                               f"long_number_t limit {LONG_MAX} for the recorded formats "
                               f"(choose fewer fractional bits for its weights or inputs)")

    def weights(self, node: Node, key: str) -> np.ndarray:
        """Weights as stored in C: float32, or checked fixed-point integers of the graph width."""
        w = node.weights[key]
        if not self.integer:
            return w.astype(np.float32)
        if w.dtype.kind not in "iu":
            raise CodegenError(f"{node.describe()}: weight '{key}' is {w.dtype}, a quantized graph stores "
                               f"integers")
        fmt = self.fmt(node, key)
        if w.size and (w.min() < fmt.min_int or w.max() > fmt.max_int):
            raise CodegenError(f"{node.describe()}: weight '{key}' leaves the {fmt.width}-bit range")
        return w.astype(np.int64)

    def bias(self, node: Node, acc_frac: int) -> np.ndarray:
        """Bias aligned to the accumulator's fractional bits (docs/arithmetic.md ``align``)."""
        b = node.weights["bias"]
        if not self.integer:
            return b.astype(np.float32)
        b = self.weights(node, "bias")
        n_b = self.fmt(node, "bias").frac
        if acc_frac >= n_b:
            return b << (acc_frac - n_b)
        return shift_right(b, n_b - acc_frac, self.graph.rounding)

    def finish(self, node: Node, acc_frac: int = 0) -> dict[str, Any]:
        """Template parameters of the final store: requantization shift and fused ReLU."""
        shift = acc_frac - self.fmt(node).frac if self.integer else 0
        if shift < -30:
            raise CodegenError(f"{node.describe()}: left shift by {-shift} bits cannot be done in int32")
        return {"integer": self.integer, "shift": shift, "relu": node.attrs.get("activation") == "relu"}


def _layer(node: Node, template: str, params: dict[str, Any], arrays: list[CArray] | None = None) -> Layer:
    return Layer(-1, node, template, [], params, arrays or [])


def _array(node: Node, key: str, ctype: str, values: np.ndarray) -> CArray:
    """``kernel_<node>``: the key goes first because node names may start with a digit."""
    return CArray(f"{key}_{c_identifier(node.name)}", ctype, values)


def _spatial(node: Node, key: str, dims: int, default: Any) -> list[int]:
    v = node.attrs.get(key, default)
    return [int(v)] * dims if isinstance(v, int) else [int(i) for i in v]


# ------------------------------------------------------------------ operators
def _conv(ctx: _Context, node: Node) -> Layer:
    dims = 1 if node.op == "Conv1D" else 2
    ctx.check_bound(node)
    kernel = ctx.weights(node, "kernel")
    c_out, c_in, *ksize = kernel.shape
    pad = _spatial(node, "padding", 2 * dims, [0] * 2 * dims)
    stride = _spatial(node, "stride", dims, 1)
    for d in range(dims):
        if max(pad[2 * d], pad[2 * d + 1]) >= ksize[d]:
            raise CodegenError(f"{node.describe()}: padding {pad} not smaller than kernel {ksize}; the "
                               f"template needs every window to touch the input")
    acc_frac = ctx.input_fmt(node).frac + ctx.fmt(node, "kernel").frac if ctx.integer else 0
    # channels-last kernel rows: (out, k..., in) so a window row is one contiguous run
    rows = np.moveaxis(kernel, 1, -1).reshape(c_out, -1)
    n_dot = rows.shape[1]
    if ctx.widen and dims == 1 and n_dot % 4:
        # int8 Conv1D: whole windows are widened with zeros up to a multiple of four values, so the kernel
        # rows get zero columns to match and every inner product runs in the 4-value SIMD steps
        n_dot += -n_dot % 4
        rows = np.pad(rows, ((0, 0), (0, n_dot - rows.shape[1])))
    in_shape, out_shape = ctx.input_shape(node), node.shape
    params = {"c_in": c_in, "c_out": c_out, "in_size": list(in_shape[1:]), "out_size": list(out_shape[1:]),
              "kernel_size": ksize, "stride": stride, "pad": pad, "widen": ctx.widen, "n_dot": n_dot,
              "interior": [_interior(in_shape[1 + d], out_shape[1 + d], ksize[d], stride[d], pad[2 * d])
                           for d in range(dims)],
              **ctx.finish(node, acc_frac)}
    arrays = [_array(node, "kernel", "number_t", rows),
              _array(node, "bias", "long_number_t", ctx.bias(node, acc_frac))]
    params["kernel"], params["bias"] = arrays[0].name, arrays[1].name
    return _layer(node, f"conv{dims}d.c.j2", params, arrays)


def _interior(in_size: int, out_size: int, kernel: int, stride: int, pad_before: int) -> tuple[int, int]:
    """Output positions [first, end) along one axis whose window lies wholly inside the input (no padding)."""
    first = -(-pad_before // stride)
    end = min(out_size, (in_size - kernel + pad_before) // stride + 1)
    return first, max(first, end)


def _dense(ctx: _Context, node: Node) -> Layer:
    ctx.check_bound(node)
    kernel = ctx.weights(node, "kernel")
    # the input may be a flattened channels-last tensor: permute the columns to its memory order
    kernel = kernel[:, memory_order(ctx.layout[node.inputs[0]])]
    acc_frac = ctx.input_fmt(node).frac + ctx.fmt(node, "kernel").frac if ctx.integer else 0
    arrays = [_array(node, "kernel", "number_t", kernel),
              _array(node, "bias", "long_number_t", ctx.bias(node, acc_frac))]
    params = {"n_in": kernel.shape[1], "n_out": kernel.shape[0], "kernel": arrays[0].name,
              "bias": arrays[1].name, **ctx.finish(node, acc_frac)}
    return _layer(node, "dense.c.j2", params, arrays)


def _scale(ctx: _Context, node: Node) -> Layer:
    ctx.check_bound(node)
    scale = ctx.weights(node, "scale")
    acc_frac = ctx.input_fmt(node).frac + ctx.fmt(node, "scale").frac if ctx.integer else 0
    bias = ctx.bias(node, acc_frac)
    layout = ctx.layout[node.inputs[0]]
    if len(node.shape) == 1 and layout != node.shape:  # a flattened vector: parameters follow memory order
        order = memory_order(layout)
        scale, bias = scale[order], bias[order]
    ctx.layout[node.name] = layout
    arrays = [_array(node, "scale", "number_t", scale), _array(node, "bias", "long_number_t", bias)]
    params = {"channels": node.shape[0], "positions": math.prod(node.shape[1:]), "scale": arrays[0].name,
              "bias": arrays[1].name, **ctx.finish(node, acc_frac)}
    return _layer(node, "scale.c.j2", params, arrays)


def _add(ctx: _Context, node: Node) -> Layer:
    layouts = {ctx.layout[i] for i in node.inputs}
    if len(layouts) != 1:
        raise CodegenError(f"{node.describe()}: operands are laid out differently in memory "
                           f"({sorted(layouts)})")
    ctx.layout[node.name] = layouts.pop()
    ctx.check_bound(node)
    if ctx.integer:
        fracs = [ctx.input_fmt(node, i).frac for i in range(len(node.inputs))]
        acc_frac = max(fracs)
        shifts = [acc_frac - f for f in fracs]
    else:
        acc_frac, shifts = 0, [0] * len(node.inputs)
    params = {"size": math.prod(node.shape), "shifts": shifts, **ctx.finish(node, acc_frac)}
    return _layer(node, "add.c.j2", params)


def _pool(ctx: _Context, node: Node) -> Layer:
    dims = int(node.op[-2])
    ctx.require_natural_layout(node)
    ctx.require_same_format(node)
    ctx.check_bound(node)
    pool = _spatial(node, "pool_size", dims, None)
    in_shape = ctx.input_shape(node)
    params = {"channels": in_shape[0], "in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]),
              "pool_size": pool, "stride": _spatial(node, "stride", dims, node.attrs["pool_size"]),
              "window": math.prod(pool), "nearest": ctx.graph.rounding == "nearest", **ctx.finish(node)}
    kind = "maxpool" if node.op.startswith("Max") else "avgpool"
    return _layer(node, f"{kind}{dims}d.c.j2", params)


def _relu(ctx: _Context, node: Node) -> Layer:
    ctx.require_same_format(node)
    ctx.layout[node.name] = ctx.layout[node.inputs[0]]
    return _layer(node, "relu.c.j2", {"size": math.prod(node.shape)})


def _zero_padding(ctx: _Context, node: Node) -> Layer:
    dims = int(node.op[-2])
    ctx.require_natural_layout(node)
    ctx.require_same_format(node)
    in_shape = ctx.input_shape(node)
    params = {"channels": in_shape[0], "in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]),
              "pad": _spatial(node, "padding", 2 * dims, None)}
    return _layer(node, f"zeropadding{dims}d.c.j2", params)


def _softmax(ctx: _Context, node: Node) -> Layer:
    if len(node.shape) != 1:
        raise CodegenError(f"{node.describe()}: Softmax over a {len(node.shape)}-D tensor {node.shape} "
                           f"is not supported (Flatten first)")
    ctx.layout[node.name] = ctx.layout[node.inputs[0]]
    params = {"size": node.shape[0], "integer": ctx.integer}
    if ctx.integer:
        params |= {"in_frac": ctx.input_fmt(node).frac, "out_frac": ctx.fmt(node).frac}
    return _layer(node, "softmax.c.j2", params)


_LOWERERS = {
    "Conv1D": _conv, "Conv2D": _conv, "Dense": _dense, "Scale": _scale, "Add": _add,
    "MaxPool1D": _pool, "MaxPool2D": _pool, "AvgPool1D": _pool, "AvgPool2D": _pool,
    "ReLU": _relu, "ZeroPadding1D": _zero_padding, "ZeroPadding2D": _zero_padding, "Softmax": _softmax,
}
