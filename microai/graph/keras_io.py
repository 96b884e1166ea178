"""Keras <-> graph IR: the paper's Keras entry point ("KerasCNN2C") and the road to TFLite.

Keras tensors are channels-last with a batch dimension, IR tensors channels-first without one:
IR ``(C, L)`` is Keras ``(L, C)``, IR ``(C, H, W)`` is Keras ``(H, W, C)``. Kernels are transposed:
Conv1D ``(out, in, k)`` <-> ``(k, in, out)``, Conv2D ``(out, in, kh, kw)`` <-> ``(kh, kw, in, out)``,
Dense ``(out, in)`` <-> ``(in, out)``.

Flatten orders the elements of ``(L, C)`` channels-last in Keras and channels-first in the IR. Both
directions track that permutation through element-wise layers and fold it into the next Dense
kernel. Where a flattened vector reaches something else (the output, an Add), the exporter puts
a ``Permute`` to channels-first before the ``Flatten``; the importer reads ``Permute`` + ``Flatten``
(or ``Reshape`` to a vector) back as one IR Flatten.

Operators (both ways unless marked):

=======================  =========================================================================
IR                       Keras
=======================  =========================================================================
Input                    InputLayer
Conv1D / Conv2D          Conv1D / Conv2D: 'valid', 'same', Conv1D 'causal'; any other padding is a
                         ZeroPadding layer named ``<conv>_pad`` before a 'valid' conv, which the
                         importer folds back into the conv. ``activation='relu'/'softmax'`` (import)
Dense                    Dense (activation as for convolutions)
MaxPool / AvgPool        MaxPooling / AveragePooling ('valid', or 'same' when it pads nothing);
                         Global{Max,Average}Pooling1D/2D -> a whole-input pool + Flatten (import)
ZeroPadding1D/2D         ZeroPadding1D/2D
Add, ReLU, Softmax       Add, ReLU / Activation('relu'), Softmax / Activation('softmax')
BatchNorm                BatchNormalization (moving statistics: inference semantics)
Scale                    BatchNormalization with epsilon 0, mean 0, variance 1
Flatten                  Flatten (+ Permute, see above); Reshape to a vector (import)
Identity                 Identity; Dropout and the other training-only noise layers vanish (import)
=======================  =========================================================================

Anything else stops the import with a GraphError naming the layer and its class.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from microai import ops
from microai.graph.ir import Graph, GraphError, Node
from microai.tflite.tf_env import keras as _keras

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
#: IR operators through which a flattened vector keeps its element order (element-wise).
_ORDER_PRESERVING = ("ReLU", "Identity", "Flatten", "BatchNorm", "Scale", "Softmax")
_PAD_SUFFIX = "_pad"
_PERMUTE_SUFFIX = "_channels_first"


# ===================================================================== shared layout helpers
def keras_shape(ir_shape: tuple[int, ...]) -> tuple[int, ...]:
    """IR (channels-first) shape -> Keras (channels-last) shape, both without batch."""
    return tuple(ir_shape) if len(ir_shape) < 2 else (*ir_shape[1:], ir_shape[0])


def ir_shape(k_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Keras (channels-last) shape -> IR (channels-first) shape, both without batch."""
    return tuple(k_shape) if len(k_shape) < 2 else (k_shape[-1], *k_shape[:-1])


def ir_index(shape: tuple[int, ...]) -> np.ndarray:
    """For an IR tensor of ``shape``: the IR flat index of every element, laid out as Keras holds it."""
    idx = np.arange(math.prod(shape)).reshape(shape)
    return idx if len(shape) < 2 else np.moveaxis(idx, 0, -1)


_TF_FIRST_CHAR = re.compile(r"[A-Za-z0-9.]")


def keras_name(ir: str) -> str:
    """A Keras layer name for an IR node name. TensorFlow scope names (SavedModel export, TFLite
    conversion) cannot start with '_' or another symbol, as torch.fx names like ``_5`` do; those
    get a leading '.', which :func:`ir_name` removes."""
    return ir if _TF_FIRST_CHAR.match(ir) else "." + ir


def _k(n: Node, suffix: str = "") -> str:
    """The Keras name of IR node ``n`` (or of a helper layer of it, with ``suffix``)."""
    return keras_name(n.name + suffix)


def ir_name(keras: str) -> str:
    """The IR node name of a Keras layer name (inverse of :func:`keras_name`)."""
    return keras[1:] if keras.startswith(".") and not _TF_FIRST_CHAR.match(keras[1:2]) else keras


def _order_or_none(order: np.ndarray) -> np.ndarray | None:
    order = order.ravel()
    return None if np.array_equal(order, np.arange(order.size)) else order


def same_padding(size: int, k: int, stride: int) -> list[int]:
    """TensorFlow's 'same': output ceil(size / stride), the odd extra sample on the right/bottom."""
    total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
    return [total // 2, total - total // 2]


# ===================================================================== IR -> Keras
def to_keras(graph: Graph, batch_size: int | None = None):
    """A Keras functional model computing ``graph`` (float32) with channels-last tensors.

    Layer names are the IR node names. ``batch_size=1`` fixes the batch dimension, as the TFLite
    converter wants it for microcontroller models.
    """
    if graph.is_quantized:
        raise GraphError(f"to_keras needs a float32 graph, got {graph.precision} (export the float model)")
    g = graph.copy()
    g.validate()
    return _Exporter(g, batch_size).build()


class _Exporter:
    def __init__(self, g: Graph, batch_size: int | None) -> None:
        self.g = g
        self.k = _keras()
        self.batch_size = batch_size
        self.tensors: dict[str, Any] = {}
        self.orders: dict[str, np.ndarray | None] = {}  # vector: Keras position -> IR index
        self.permute_first = _flattens_needing_permute(g)

    def build(self):
        for n in self.g.nodes:
            try:
                out, order = getattr(self, "_" + n.op.lower())(n)
            except ValueError as e:  # Keras' own complaints (e.g. a name clash)
                raise GraphError(f"{n.describe()}: Keras rejects the layer: {e}") from e
            if n.attrs.get("activation") == "relu":
                out = self.k.layers.ReLU(name=_k(n, "_relu"))(out)
            self.tensors[n.name], self.orders[n.name] = out, order
        name = keras_name(str(self.g.metadata.get("name", "microai")).replace("/", "_"))
        try:
            return self.k.Model(self.tensors[self.g.input.name], self.tensors[self.g.output], name=name)
        except ValueError as e:  # e.g. a node named like an exporter's '<conv>_pad' layer
            raise GraphError(f"graph '{name}': Keras rejects the model: {e}") from e

    # ------------------------------------------------------------ helpers
    def _in(self, n: Node, i: int = 0):
        return self.tensors[n.inputs[i]]

    def _in_shape(self, n: Node, i: int = 0) -> tuple[int, ...]:
        return self.g.node(n.inputs[i]).shape

    def _apply(self, layer, n: Node, weights: list[np.ndarray] | None = None, inputs=None):
        out = layer(self._in(n) if inputs is None else inputs)
        if weights is not None:
            layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])
        return out

    # ------------------------------------------------------------ operators
    def _input(self, n: Node):
        shape = keras_shape(n.shape)
        return self.k.Input(shape=shape, batch_size=self.batch_size, name=_k(n)), None

    def _conv(self, n: Node, dims: int):
        L = self.k.layers
        kernel = n.weights["kernel"]
        ksize = list(kernel.shape[2:])
        stride, pad = ops.of(n).stride(n), ops.of(n).padding(n)
        spatial = self._in_shape(n)[1:]
        same = [p for d in range(dims) for p in same_padding(spatial[d], ksize[d], stride[d])]
        x = self._in(n)
        if not any(pad):
            mode = "valid"
        elif pad == same:
            mode = "same"
        else:
            mode = "valid"
            pairs = (pad[0], pad[1]) if dims == 1 else ((pad[0], pad[1]), (pad[2], pad[3]))
            x = (L.ZeroPadding1D if dims == 1 else L.ZeroPadding2D)(pairs, name=_k(n, _PAD_SUFFIX))(x)
        conv = (L.Conv1D if dims == 1 else L.Conv2D)(
            kernel.shape[0], ksize if dims == 2 else ksize[0], strides=stride if dims == 2 else stride[0],
            padding=mode, name=_k(n))
        k_kernel = np.transpose(kernel, (2, 1, 0) if dims == 1 else (2, 3, 1, 0))
        return self._apply(conv, n, [k_kernel, n.weights["bias"]], inputs=x), None

    def _conv1d(self, n: Node):
        return self._conv(n, 1)

    def _conv2d(self, n: Node):
        return self._conv(n, 2)

    def _dense(self, n: Node):
        w = n.weights["kernel"]
        order = self.orders[n.inputs[0]]
        k_kernel = (w if order is None else w[:, order]).T
        layer = self.k.layers.Dense(w.shape[0], name=_k(n))
        return self._apply(layer, n, [k_kernel, n.weights["bias"]]), None

    def _pool(self, n: Node, layer_type):
        pool, stride = ops.of(n).pool_size(n), ops.of(n).stride(n)
        size, strides = (pool[0], stride[0]) if len(pool) == 1 else (tuple(pool), tuple(stride))
        return self._apply(layer_type(size, strides=strides, padding="valid", name=_k(n)), n), None

    def _maxpool1d(self, n: Node):
        return self._pool(n, self.k.layers.MaxPooling1D)

    def _maxpool2d(self, n: Node):
        return self._pool(n, self.k.layers.MaxPooling2D)

    def _avgpool1d(self, n: Node):
        return self._pool(n, self.k.layers.AveragePooling1D)

    def _avgpool2d(self, n: Node):
        return self._pool(n, self.k.layers.AveragePooling2D)

    def _zeropadding1d(self, n: Node):
        left, right = ops.of(n).padding(n)
        return self._apply(self.k.layers.ZeroPadding1D((left, right), name=_k(n)), n), None

    def _zeropadding2d(self, n: Node):
        top, bottom, left, right = ops.of(n).padding(n)
        return self._apply(self.k.layers.ZeroPadding2D(((top, bottom), (left, right)), name=_k(n)), n), None

    def _add(self, n: Node):
        orders = [self.orders[i] for i in n.inputs]
        if any(not _equal_orders(o, orders[0]) for o in orders):  # pragma: no cover - Permute prevents it
            raise GraphError(f"{n.describe()}: operands flattened in different orders")
        return self.k.layers.Add(name=_k(n))([self.tensors[i] for i in n.inputs]), orders[0]

    def _relu(self, n: Node):
        return self._apply(self.k.layers.ReLU(name=_k(n)), n), self.orders[n.inputs[0]]

    def _softmax(self, n: Node):
        return self._apply(self.k.layers.Softmax(axis=-1, name=_k(n)), n), self.orders[n.inputs[0]]

    def _identity(self, n: Node):
        return self._apply(self.k.layers.Identity(name=_k(n)), n), self.orders[n.inputs[0]]

    def _bn_layer(self, n: Node, eps: float, params: list[np.ndarray]):
        order = self.orders[n.inputs[0]]
        if order is not None:
            params = [p[order] for p in params]
        layer = self.k.layers.BatchNormalization(axis=-1, epsilon=eps, name=_k(n))
        return self._apply(layer, n, params), order

    def _batchnorm(self, n: Node):
        w = n.weights
        params = [w["gamma"], w["beta"], w["mean"], w["var"]]
        return self._bn_layer(n, float(n.attrs.get("eps", 1e-5)), params)

    def _scale(self, n: Node):
        s, b = n.weights["scale"], n.weights["bias"]
        return self._bn_layer(n, 0.0, [s, b, np.zeros_like(s), np.ones_like(s)])

    def _flatten(self, n: Node):
        L = self.k.layers
        shape = self._in_shape(n)
        x = self._in(n)
        if len(shape) == 1:
            return self._apply(L.Flatten(name=_k(n)), n), self.orders[n.inputs[0]]
        if n.name in self.permute_first:
            x = L.Permute((len(shape), *range(1, len(shape))), name=_k(n, _PERMUTE_SUFFIX))(x)
            return L.Flatten(name=_k(n))(x), None
        return L.Flatten(name=_k(n))(x), _order_or_none(ir_index(shape))


def _equal_orders(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)


def _flattens_needing_permute(g: Graph) -> set[str]:
    """Flatten nodes of multi-position tensors whose vector reaches anything but Dense kernels
    (through element-wise operators): their Keras twin must flatten channels-first."""
    out = set()
    for f in g.nodes:
        if f.op != "Flatten" or math.prod(g.node(f.inputs[0]).shape[1:]) <= 1:
            continue
        stack = [f]
        while stack:
            n = stack.pop()
            users = g.consumers(n.name)
            if n.name == g.output or any(u.op not in (*_ORDER_PRESERVING, "Dense") for u in users):
                out.add(f.name)
                break
            stack += [u for u in users if u.op != "Dense"]
    return out


# ===================================================================== Keras -> IR
def load_keras(path: str | Path, name: str | None = None) -> Graph:
    """Read a ``.keras`` or ``.h5`` model file into a validated graph (float32)."""
    path = Path(path)
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise GraphError(f"{path}: not a Keras model file (expected one of {', '.join(KERAS_SUFFIXES)})")
    if not path.is_file():
        raise GraphError(f"{path}: no such Keras model file")
    k = _keras()
    try:
        model = k.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises ValueError, TypeError, OSError ... for unreadable files
        raise GraphError(f"{path}: cannot load the Keras model: {type(e).__name__}: {e}") from e
    try:
        return from_keras(model, name=name or path.stem)
    except GraphError as e:
        raise GraphError(f"{path}: {e}") from e


@dataclass
class _Value:
    """A Keras tensor as the importer sees it.

    ``ir``: the IR node holding its data. ``index``: None when the Keras tensor is the IR tensor in
    the canonical layout (channels-last of a spatial IR tensor, same order for a vector); else the
    IR flat index of each Keras element (a flatten order, or a Permute output). ``pad``: the
    padding of a ZeroPadding layer ``<conv>_pad`` left to the convolution it feeds (to_keras writes
    such layers); ``ir`` and ``shape`` are then those of the unpadded input.
    """

    ir: str
    shape: tuple[int, ...]  # Keras shape without batch
    index: np.ndarray | None = None
    pad: list[int] | None = None


def from_keras(model, name: str | None = None) -> Graph:
    """Convert a built Keras model (Functional or Sequential, one input, one output) to a graph."""
    return _Importer(model).build(name)


_NOISE_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                 "AlphaDropout", "ActivityRegularization")


class _Importer:
    def __init__(self, model) -> None:
        self.k = _keras()
        self.model = model
        self.model_name = getattr(model, "name", type(model).__name__)
        try:
            inputs, outputs = model.inputs, model.outputs
        except (AttributeError, ValueError) as e:
            raise GraphError(f"{self.model_name}: model has no defined inputs (build it on an Input first): "
                             f"{e}") from e
        if not inputs or len(inputs) != 1 or len(outputs) != 1:
            raise GraphError(f"{self.model_name}: {len(inputs or [])} inputs and {len(outputs or [])} "
                             "outputs; MicroAI converts models with one of each")
        self.input, self.output = inputs[0], outputs[0]
        self.nodes: list[Node] = []
        self.values: dict[int, _Value] = {}
        self.expected: dict[str, tuple[int, ...]] = {}  # IR node -> shape Keras computes
        self.provenance: dict[str, str] = {}
        self.readers: dict[int, list[Any]] = {}  # Keras tensor -> the layers reading it
        self.current: Any = None  # the Keras tensor the visited layer produces

    # ------------------------------------------------------------ driver
    def build(self, name: str | None) -> Graph:
        calls = self._calls()
        for layer, node in calls:
            for t in node.input_tensors:
                self.readers.setdefault(id(t), []).append(layer)
        for layer, node in calls:
            self._visit(layer, node)
        out = self.values[id(self.output)]
        if out.index is not None or out.pad is not None:
            self._fail(self.output._keras_history[0],
                       "model output in Keras' channels-last element order (the IR flattens channels "
                       "first: add a Dense after the Flatten, or Permute the channels first)")
        g = Graph(self.nodes, out.ir)
        g.validate()
        for n in g.nodes:
            want = self.expected.get(n.name)
            if want is not None and want != n.shape:
                raise GraphError(f"{self.model_name}: {n.describe()} has IR shape {n.shape} but Keras "
                                 f"computes {keras_shape(want)} (channels-last)")
        k = self.k
        g.metadata = {"name": name or self.model_name, "source": "keras", "keras_version": k.__version__,
                      "input_shape": list(g.input.shape), "keras_layers": self.provenance}
        return g

    def _calls(self) -> list[tuple[Any, Any]]:
        """Every (layer, call node) from the input to the output, in the model's layer order."""
        found: dict[int, tuple[Any, Any]] = {}
        stack = [self.output]
        while stack:
            op, node_index, _ = stack.pop()._keras_history
            node = op._inbound_nodes[node_index]
            if id(node) in found:
                continue
            found[id(node)] = (op, node)
            stack += list(node.input_tensors)
        rank = {id(layer): i for i, layer in enumerate(self.model.layers)}
        input_layer = self.input._keras_history[0]
        calls = list(found.values())
        layers = [id(op) for op, _ in calls]
        for op, _ in calls:
            if layers.count(id(op)) > 1:
                self._fail(op, "layer called more than once (shared weights)")
            if id(op) not in rank and op is not input_layer:
                self._fail(op, "layer outside the model's layer list")
        return sorted(calls, key=lambda c: -1 if c[0] is input_layer else rank[id(c[0])])

    def _visit(self, layer, node) -> None:
        cls = type(layer).__name__
        if len(node.outputs) != 1:
            self._fail(layer, f"{len(node.outputs)} outputs")
        ins = [self.values[id(t)] for t in node.input_tensors]
        out_shape = tuple(int(d) if d is not None else -1 for d in node.outputs[0].shape[1:])
        self.current = node.outputs[0]
        handler = _HANDLERS.get(cls)
        known = handler is not None or cls in _NOISE_LAYERS
        if not known or type(layer) is not getattr(self.k.layers, cls, None):
            self._fail(layer, f"layer class {cls}")  # also a subclass: its call() may compute anything
        value = ins[0] if handler is None else handler(self, layer, ins, out_shape)
        self.values[id(node.outputs[0])] = value

    # ------------------------------------------------------------ helpers
    def _fail(self, layer, what: str) -> NoReturn:
        where = f"layer '{layer.name}' ({type(layer).__name__})"
        raise GraphError(f"{self.model_name}: {where}: unsupported {what}")

    def _emit(self, layer, op: str, inputs: list[_Value], attrs: dict | None = None,
              weights: dict[str, np.ndarray] | None = None, name: str | None = None,
              keras_out: tuple[int, ...] | None = None) -> str:
        name = name or ir_name(layer.name)
        self.nodes.append(Node(name, op, [v.ir for v in inputs], attrs or {}, weights or {}))
        self.provenance[name] = layer.name
        if keras_out is not None:
            self.expected[name] = ir_shape(keras_out)
        return name

    def _canonical(self, layer, v: _Value) -> _Value:
        """``v`` in the canonical layout (no pending pad or permutation), else an error."""
        if v.pad is not None:
            self._fail(layer, "input from a ZeroPadding folded into another convolution")
        if v.index is not None and len(v.shape) > 1:
            self._fail(layer, "input in a permuted (not channels-last) layout")
        return v

    def _spatial_input(self, layer, v: _Value, dims: int) -> _Value:
        v = self._canonical(layer, v)
        if len(v.shape) != dims + 1:
            self._fail(layer, f"input of shape {v.shape} (expected {dims} spatial dimension(s) + channels)")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            self._fail(layer, f"data_format='{layer.data_format}'")
        return v

    def _activation(self, layer, name: str, out: _Value, keras_out: tuple[int, ...]) -> _Value:
        """The layer's ``activation`` argument as a separate IR node."""
        fn = getattr(layer.activation, "__name__", str(layer.activation))
        if fn == "linear":
            return out
        if fn not in ("relu", "softmax"):
            self._fail(layer, f"activation='{fn}'")
        if fn == "softmax" and len(out.shape) != 1:
            self._fail(layer, "activation='softmax' over a tensor with spatial dimensions")
        op = "ReLU" if fn == "relu" else "Softmax"
        ir = self._emit(layer, op, [out], name=f"{name}_{fn}", keras_out=keras_out)
        return _Value(ir, out.shape, out.index)

    @staticmethod
    def _np(v) -> np.ndarray:
        return np.array(v.numpy(), dtype=np.float32)

    # ------------------------------------------------------------ layers
    def input_layer(self, layer, ins, out_shape):
        shape = tuple(int(d) if d is not None else -1 for d in layer.batch_shape[1:])
        if any(d < 1 for d in shape) or not 1 <= len(shape) <= 3:
            self._fail(layer, f"input shape {shape} (needs a fully known vector, 1D signal or image)")
        ir = self._emit(layer, "Input", [], {"shape": list(ir_shape(shape))})
        return _Value(ir, shape)

    def conv(self, layer, ins, out_shape):
        dims = 1 if type(layer).__name__ == "Conv1D" else 2
        (x,) = ins
        pre_pad = x.pad
        x = self._spatial_input(layer, _Value(x.ir, x.shape, x.index), dims)  # shape before a deferred pad
        if any(d != 1 for d in layer.dilation_rate) or layer.groups != 1:
            self._fail(layer, f"dilation_rate={layer.dilation_rate}, groups={layer.groups}")
        ksize, stride = list(layer.kernel_size), list(layer.strides)
        pad = pre_pad or [0] * 2 * dims
        padded = [x.shape[d] + pad[2 * d] + pad[2 * d + 1] for d in range(dims)]
        if layer.padding == "same":
            extra = [p for d in range(dims) for p in same_padding(padded[d], ksize[d], stride[d])]
        elif layer.padding == "causal":
            extra = [ksize[0] - 1, 0]
        else:
            extra = [0] * 2 * dims
        pad = [a + b for a, b in zip(pad, extra, strict=True)]
        kernel = self._np(layer.kernel)
        kernel = np.transpose(kernel, (2, 1, 0) if dims == 1 else (3, 2, 0, 1))
        bias = self._np(layer.bias) if layer.use_bias else np.zeros(kernel.shape[0], np.float32)
        attrs = {"stride": stride[0] if dims == 1 else stride, "padding": pad}
        ir = self._emit(layer, f"Conv{dims}D", [x], attrs, {"kernel": kernel, "bias": bias},
                        keras_out=out_shape)
        return self._activation(layer, ir, _Value(ir, out_shape), out_shape)

    def dense(self, layer, ins, out_shape):
        (x,) = ins
        if x.pad is not None or len(x.shape) != 1:
            self._fail(layer, f"Dense on a tensor of shape {x.shape} (only on vectors: Flatten first)")
        k_kernel = self._np(layer.kernel)
        kernel = np.empty_like(k_kernel.T)
        kernel[:, x.index if x.index is not None else slice(None)] = k_kernel.T
        bias = self._np(layer.bias) if layer.use_bias else np.zeros(kernel.shape[0], np.float32)
        ir = self._emit(layer, "Dense", [x], {}, {"kernel": kernel, "bias": bias}, keras_out=out_shape)
        return self._activation(layer, ir, _Value(ir, out_shape), out_shape)

    def pool(self, layer, ins, out_shape):
        cls = type(layer).__name__
        dims = int(cls[-2])
        x = self._spatial_input(layer, ins[0], dims)
        pool = list(layer.pool_size)
        stride = list(layer.strides) if layer.strides is not None else pool
        if layer.padding == "same" and any(
                p for d in range(dims) for p in same_padding(x.shape[d], pool[d], stride[d])):
            self._fail(layer, f"padding='same' that pads the input {x.shape[:-1]} (IR pools do not pad)")
        op = ("MaxPool" if cls.startswith("Max") else "AvgPool") + f"{dims}D"
        return _Value(self._emit(layer, op, [x], _pool_attrs(pool, stride), keras_out=out_shape), out_shape)

    def global_pool(self, layer, ins, out_shape):
        cls = type(layer).__name__
        dims = int(cls[-2])
        x = self._spatial_input(layer, ins[0], dims)
        spatial = list(x.shape[:-1])
        op = ("MaxPool" if cls.startswith("GlobalMax") else "AvgPool") + f"{dims}D"
        attrs = _pool_attrs(spatial, spatial)
        if layer.keepdims:
            return _Value(self._emit(layer, op, [x], attrs, keras_out=out_shape), out_shape)
        pooled = self._emit(layer, op, [x], attrs, name=f"{ir_name(layer.name)}_pool")
        pooled_v = _Value(pooled, (*[1] * dims, x.shape[-1]))
        return _Value(self._emit(layer, "Flatten", [pooled_v], keras_out=out_shape), out_shape)

    def zero_padding(self, layer, ins, out_shape):
        dims = int(type(layer).__name__[-2])
        x = self._spatial_input(layer, ins[0], dims)
        pad = [int(p) for pair in (layer.padding if dims == 2 else [layer.padding]) for p in pair]
        readers = self.readers.get(id(self.current), [])
        if (len(readers) == 1 and readers[0].name + _PAD_SUFFIX == layer.name
                and type(readers[0]).__name__ == f"Conv{dims}D" and self.current is not self.output):
            return _Value(x.ir, x.shape, pad=pad)  # the convolution's own padding (see to_keras)
        return _Value(self._emit(layer, f"ZeroPadding{dims}D", [x], {"padding": pad}, keras_out=out_shape),
                      out_shape)

    def add(self, layer, ins, out_shape):
        first = ins[0]
        for v in ins:
            if v.pad is not None or v.shape != first.shape or (len(v.shape) > 1 and v.index is not None) \
                    or not _equal_orders(v.index, first.index):
                self._fail(layer, f"operands of shapes {[w.shape for w in ins]} in different layouts")
        if len(ins) < 2:
            self._fail(layer, "Add of a single tensor")
        return _Value(self._emit(layer, "Add", ins, keras_out=out_shape), out_shape, first.index)

    def relu(self, layer, ins, out_shape):
        if layer.max_value is not None or layer.negative_slope != 0 or layer.threshold != 0:
            self._fail(layer, f"ReLU(max_value={layer.max_value}, negative_slope={layer.negative_slope}, "
                              f"threshold={layer.threshold})")
        return self._elementwise(layer, "ReLU", ins[0], out_shape)

    def _elementwise(self, layer, op: str, x: _Value, out_shape) -> _Value:
        if x.pad is not None:
            self._canonical(layer, x)
        ir = self._emit(layer, op, [x], keras_out=out_shape if x.index is None else None)
        return _Value(ir, out_shape, x.index)

    def activation(self, layer, ins, out_shape):
        fn = getattr(layer.activation, "__name__", str(layer.activation))
        if fn == "linear":
            return ins[0]
        if fn == "relu":
            return self._elementwise(layer, "ReLU", ins[0], out_shape)
        if fn == "softmax":
            return self.softmax(layer, ins, out_shape)
        self._fail(layer, f"Activation('{fn}')")

    def softmax(self, layer, ins, out_shape):
        x = ins[0]
        axis = getattr(layer, "axis", -1)
        if len(x.shape) != 1 or axis not in (-1, 1, [-1], (-1,)):
            self._fail(layer, f"softmax over axis {axis} of a tensor of shape {x.shape} (only over a vector)")
        return self._elementwise(layer, "Softmax", x, out_shape)

    def identity(self, layer, ins, out_shape):
        return self._elementwise(layer, "Identity", ins[0], out_shape)

    def batch_norm(self, layer, ins, out_shape):
        x = self._canonical(layer, ins[0]) if len(ins[0].shape) > 1 else ins[0]
        rank = len(x.shape) + 1
        if layer.axis not in (-1, rank - 1) or getattr(layer, "renorm", False):
            self._fail(layer, f"axis={layer.axis} (only the channel axis, {rank - 1})")
        mean, var = self._np(layer.moving_mean), self._np(layer.moving_variance)
        n = len(mean)
        gamma = self._np(layer.gamma) if layer.scale else np.ones(n, np.float32)
        beta = self._np(layer.beta) if layer.center else np.zeros(n, np.float32)
        params = [gamma, beta, mean, var]
        if x.index is not None:  # vector in Keras order -> IR order
            params = [_scatter(p, x.index) for p in params]
            gamma, beta, mean, var = params
        if layer.epsilon == 0 and not mean.any() and np.all(var == 1):
            op, attrs, weights = "Scale", {}, {"scale": gamma, "bias": beta}
        else:
            op, attrs = "BatchNorm", {"eps": float(layer.epsilon)}
            weights = {"mean": mean, "var": var, "gamma": gamma, "beta": beta}
        ir = self._emit(layer, op, [x], attrs, weights, keras_out=out_shape)
        return _Value(ir, out_shape, x.index)

    def flatten(self, layer, ins, out_shape):
        x = ins[0]
        if x.pad is not None:
            self._canonical(layer, x)
        index = x.index if x.index is not None else ir_index(ir_shape(x.shape))
        if getattr(layer, "data_format", "channels_last") == "channels_first" and index.ndim > 1:
            index = np.transpose(index, (*range(1, index.ndim), 0))
        return self._flatten_to(layer, x, index, out_shape)

    def _flatten_to(self, layer, x: _Value, index: np.ndarray, out_shape) -> _Value:
        order = _order_or_none(index)
        ir = self._emit(layer, "Flatten", [x], keras_out=out_shape if order is None else None)
        return _Value(ir, out_shape, order)

    def reshape(self, layer, ins, out_shape):
        x = ins[0]
        if len(out_shape) != 1:
            self._fail(layer, f"Reshape to {out_shape} (only to a vector, as a Flatten)")
        if x.pad is not None:
            self._canonical(layer, x)
        index = x.index if x.index is not None else ir_index(ir_shape(x.shape))
        return self._flatten_to(layer, x, index, out_shape)

    def permute(self, layer, ins, out_shape):
        x = self._canonical(layer, ins[0])
        index = ir_index(ir_shape(x.shape))
        return _Value(x.ir, out_shape, index.transpose([d - 1 for d in layer.dims]))


def _pool_attrs(pool: list[int], stride: list[int]) -> dict[str, Any]:
    """The torch importer's attribute style: ints for 1D, lists for 2D."""
    if len(pool) == 1:
        return {"pool_size": pool[0], "stride": stride[0]}
    return {"pool_size": pool, "stride": stride}


def _scatter(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Keras-ordered per-element values -> IR order (``out[index[i]] = values[i]``)."""
    out = np.empty_like(values)
    out[index] = values
    return out


_HANDLERS = {
    "InputLayer": _Importer.input_layer,
    "Conv1D": _Importer.conv,
    "Conv2D": _Importer.conv,
    "Dense": _Importer.dense,
    "MaxPooling1D": _Importer.pool,
    "MaxPooling2D": _Importer.pool,
    "AveragePooling1D": _Importer.pool,
    "AveragePooling2D": _Importer.pool,
    "GlobalMaxPooling1D": _Importer.global_pool,
    "GlobalMaxPooling2D": _Importer.global_pool,
    "GlobalAveragePooling1D": _Importer.global_pool,
    "GlobalAveragePooling2D": _Importer.global_pool,
    "ZeroPadding1D": _Importer.zero_padding,
    "ZeroPadding2D": _Importer.zero_padding,
    "Add": _Importer.add,
    "ReLU": _Importer.relu,
    "Activation": _Importer.activation,
    "Softmax": _Importer.softmax,
    "Identity": _Importer.identity,
    "BatchNormalization": _Importer.batch_norm,
    "Flatten": _Importer.flatten,
    "Reshape": _Importer.reshape,
    "Permute": _Importer.permute,
}
