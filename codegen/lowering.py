"""Graph IR -> a list of C layers: geometry, re-laid-out weights, shifts and static checks.

Each operator lowers itself (``lower`` in its :mod:`microai.ops` module) with the
:class:`LoweringContext` passed in here: everything the templates need is computed as plain
numbers, so the templates only spell loops. Tensors are channels-last in memory (see
:mod:`codegen.layout`); aliasing operators (Flatten, Identity) cost nothing: their output is their
input's buffer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from codegen.ctext import c_identifier, number_ctype
from codegen.errors import CodegenError
from codegen.layout import memory_order
from microai import ops
from microai.graph import Graph, Node, QFormat
from microai.ops.pow2 import LONG_MAX
from microai.ops.tflite import ACTIVATIONS, TFLITE
from microai.quant.reference import accumulator_bound, shift_right

#: The C of every layer: plain reference loops, or the optimized kernels (codegen/templates/<set>/).
KERNEL_SETS = ("reference", "optimized")


@dataclass
class CArray:
    """A ``static const`` array of one layer (lands in flash)."""

    name: str
    ctype: str  # "number_t" or "long_number_t"
    values: np.ndarray  # 1-D, or 2-D emitted as [rows][cols]

    @property
    def dims(self) -> str:
        return "".join(f"[{d}]" for d in self.values.shape)


@dataclass(frozen=True)
class Helper:
    """A function several layers may share (e.g. a block kernel of one geometry), emitted once in kernels.h:
    ``template`` rendered with ``params`` ((name, value) pairs, so that equal helpers compare equal)."""

    template: str
    params: tuple[tuple[str, Any], ...]


@dataclass
class Layer:
    """One C function ``layer_<index>_<name>`` computing one node.

    ``template`` names a file of each kernel set (``codegen/templates/<kernels>/<template>``);
    ``scratch_bytes`` of arena memory, live during this layer only, are passed as a last argument
    ``scratch_t *scratch``.
    """

    index: int
    node: Node
    template: str
    inputs: list[str]  # buffer owners read, in operand order
    params: dict[str, Any]
    arrays: list[CArray] = field(default_factory=list)
    scratch_bytes: int = 0
    helpers: list[Helper] = field(default_factory=list)
    #: Why the layer uses the reference kernels although the optimized ones were asked for (None: it doesn't).
    fallback: str | None = None

    @property
    def function(self) -> str:
        return f"layer_{self.index}_{c_identifier(self.node.name)}"


@dataclass
class Lowered:
    """The layers in execution order plus, per node, its buffer owner and memory layout shape."""

    layers: list[Layer]
    owner: dict[str, str]
    layout: dict[str, tuple[int, ...]]


def lower(graph: Graph, kernels: str = "optimized", block_bands: Collection[str] = ()) -> Lowered:
    """A validated, simplified graph as C layers of one kernel set; raise CodegenError naming the node.

    ``block_bands``: int8 convolutions whose optimized kernel holds a band of 4 output positions in scratch
    memory instead of a whole row's (:func:`microai.ops.conv.band_layout`)."""
    nodes = _live_nodes(graph)
    ctx = LoweringContext(graph, kernels, frozenset(block_bands))
    layers: list[Layer] = []
    for index, node in enumerate(graph.nodes):
        if node.name not in nodes:
            continue
        _check_activation(graph, node)
        op = ops.of(node)
        if node.op == "Input":
            ctx.owner[node.name] = node.name
            ctx.layout[node.name] = node.shape
        elif op.alias:
            src = node.inputs[0]
            ctx.owner[node.name] = ctx.owner[src]
            ctx.layout[node.name] = ctx.layout[src]
            ctx.require_same_format(node)
        else:
            if not op.lowers_to_c:
                supported = sorted(n for n, o in ops.REGISTRY.items()
                                   if o.lowers_to_c or o.alias or n == "Input")
                raise CodegenError(f"{node.describe()}: operator not supported by the C generator "
                                   f"(supported: {supported}; "
                                   f"BatchNorm must be folded by microai.graph.passes first)")
            ctx.owner[node.name] = node.name
            ctx.layout[node.name] = node.shape
            layer = op.lower_tflite(ctx, node) if ctx.tflite else op.lower(ctx, node)
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


def _check_activation(graph: Graph, node: Node) -> None:
    act = node.attrs.get("activation")
    allowed = ACTIVATIONS if graph.is_quantized and graph.scheme == TFLITE else ("relu",)
    if act is not None and (act not in allowed or not ops.of(node).relu_fusable):
        raise CodegenError(f"{node.describe()}: fused activation '{act}' not supported "
                           f"(only {allowed} on {ops.relu_fusable()})")


class LoweringContext:
    """What an operator's ``lower`` gets: per-graph facts (formats, buffer owners, layouts), checks,
    weight conversion and the constructors of C layers and arrays."""

    def __init__(self, graph: Graph, kernels: str, block_bands: frozenset[str] = frozenset()) -> None:
        self.graph = graph
        self.kernels = kernels
        self.block_bands = block_bands
        self.owner: dict[str, str] = {}
        self.layout: dict[str, tuple[int, ...]] = {}

    @property
    def integer(self) -> bool:
        return self.graph.is_quantized

    @property
    def tflite(self) -> bool:
        """The graph follows TFLite's integer scheme (operators lower with ``lower_tflite``)."""
        return self.integer and self.graph.scheme == TFLITE

    @property
    def narrow(self) -> bool:
        """int8_t storage (widths <= 8; the tflite scheme's int8 weights): the optimized kernels widen values
        to int16 before multiplying."""
        return self.tflite or (self.integer and number_ctype(self.graph.precision) == "int8_t")

    def fmt(self, node: Node, key: str = "output") -> QFormat:
        try:
            fmt = node.formats[key]
        except KeyError:
            raise CodegenError(f"{node.describe()}: no '{key}' number format recorded") from None
        if not self.tflite and fmt.width != self.graph.width:
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

    def rounding_in_bias(self, node: Node, bias: np.ndarray, shift: int) -> np.ndarray:
        """The bias of a kernel that requantizes by a plain right shift (floor): with round-to-nearest, the
        rounding term 2**(shift - 1) added once here instead of to every output."""
        if self.graph.rounding != "nearest" or shift <= 0:
            return bias
        folded = bias + (1 << (shift - 1))
        if np.abs(folded).max() > LONG_MAX:
            raise CodegenError(f"{node.describe()}: bias + rounding term {np.abs(folded).max()} exceeds the "
                               f"int32 long_number_t limit {LONG_MAX}")
        return folded

    def finish(self, node: Node, acc_frac: int = 0) -> dict[str, Any]:
        """Template parameters of the final store: requantization shift and fused ReLU."""
        shift = acc_frac - self.fmt(node).frac if self.integer else 0
        if shift < -30:
            raise CodegenError(f"{node.describe()}: left shift by {-shift} bits cannot be done in int32")
        return {"integer": self.integer, "shift": shift, "relu": node.attrs.get("activation") == "relu"}

    @staticmethod
    def memory_order(layout_shape: tuple[int, ...]) -> np.ndarray:
        """:func:`codegen.layout.memory_order`: memory position -> logical element index."""
        return memory_order(layout_shape)

    @staticmethod
    def error(message: str) -> CodegenError:
        """The exception a lowering raises for a graph the C cannot compute."""
        return CodegenError(message)

    @property
    def optimized(self) -> bool:
        return self.kernels == "optimized"

    @staticmethod
    def layer(node: Node, template: str, params: dict[str, Any], arrays: list[CArray] | None = None,
              scratch_bytes: int = 0, helpers: list[Helper] | None = None,
              fallback: str | None = None) -> Layer:
        """A C layer of ``node`` from ``<kernels>/<template>`` (lower() fills in its index and inputs);
        ``fallback``: why the reference kernel computes it although the optimized set was asked for."""
        return Layer(-1, node, template, [], params, arrays or [], scratch_bytes, helpers or [], fallback)

    @staticmethod
    def typed_arrays(node: Node, params: dict[str, Any], **values: tuple[str, np.ndarray]) -> list[CArray]:
        """One ``static const`` array per keyword ``key=(C type, values)``, named ``<key>_<node>``; the names
        go into ``params``."""
        arrays = []
        for key, (ctype, v) in values.items():
            params[key] = f"{key}_{c_identifier(node.name)}"
            arrays.append(CArray(params[key], ctype, v))
        return arrays

    @staticmethod
    def helper(template: str, **params: Any) -> Helper:
        """A shared function of kernels.h (emitted once however many layers ask for it)."""
        return Helper(template, tuple(sorted(params.items())))

    @staticmethod
    def arrays(node: Node, params: dict[str, Any], **values: np.ndarray) -> list[CArray]:
        """One ``static const`` array per keyword, named ``<key>_<node>`` (the key first: node names may start
        with a digit); ``bias`` holds long_number_t, the others number_t. Their names go into ``params``."""
        arrays = []
        for key, v in values.items():
            params[key] = f"{key}_{c_identifier(node.name)}"
            arrays.append(CArray(params[key], "long_number_t" if key == "bias" else "number_t", v))
        return arrays


