"""A quantized ``.tflite`` model -> the graph IR in the ``tflite`` scheme: MicroAI as an engine for a user's
existing TFLite int8 (or 16x8) model, reproducing the TFLM host runtime's outputs bit for bit.

TFLite tensors are channels-last with a batch of one, IR tensors channels-first without it (see
:mod:`microai.graph.keras_io`). A 1D convolution reaches TFLite as a CONV_2D of height one between
RESHAPE/EXPAND_DIMS ops; the importer follows the data rather than the ops, so such a graph comes back
as Conv1D/MaxPool1D nodes on ``(C, L)`` tensors. A RESHAPE (or EXPAND_DIMS/SQUEEZE) that only adds or
drops unit dimensions is no node at all; one that flattens a spatial tensor becomes an IR Flatten, whose
channels-first order is folded into the FULLY_CONNECTED kernel that reads it.

Operators: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, AVERAGE_POOL_2D, ADD, MEAN (over the
spatial axes), PAD (spatial), SOFTMAX, RESHAPE, EXPAND_DIMS, SQUEEZE; fused NONE/RELU/RELU6. Anything else
stops the import with a GraphError naming the operator and its index. Weights keep their integers;
formats are :class:`AffineFormat` from the tensors' quantization (float32 scales, zero points).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from microai import ops
from microai.graph.ir import AffineFormat, Graph, GraphError, Node
from microai.graph.keras_io import ir_index, ir_shape, same_padding
from microai.tflite import runtime

TFLITE_SUFFIX = ".tflite"
_INT_TYPES = {9: (np.int8, 8), 7: (np.int16, 16), 2: (np.int32, 32), 4: (np.int64, 64)}  # TensorType
_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}  # ActivationFunctionType NONE, RELU, RELU6
_SAME, _VALID = 0, 1


@dataclass
class _Value:
    """A TFLite tensor as the importer sees it: the IR node holding its data and, for a vector flattened
    from a spatial tensor in TFLite's channels-last order, the IR flat index of each element (else None)."""

    ir: str
    index: np.ndarray | None = None


def load_tflite(path: str | Path, name: str | None = None) -> Graph:
    """Read a quantized ``.tflite`` file into a validated tflite-scheme graph."""
    return from_tflite(Path(path), name=name or Path(path).stem)


def from_tflite(model: runtime.ModelSource, name: str | None = None) -> Graph:
    """The graph of a quantized TFLite model (path or flatbuffer bytes): int8 activations, or int16 ones with
    int8 weights (TFLite's 16x8); one input and one output tensor. GraphError names the file (or "model
    bytes"), the operator and its index."""
    try:
        obj, names = runtime.parse_model(model), runtime.operators(model)
    except runtime.TFLMError as e:
        raise GraphError(str(e)) from e
    where = "model bytes" if isinstance(model, (bytes, bytearray)) else str(model)
    try:
        return _Importer(obj, names, name or "tflite").build()
    except GraphError as e:
        raise GraphError(f"{where}: {e}") from e


class _Importer:
    def __init__(self, obj: Any, operators: list[str], name: str) -> None:
        self.obj = obj
        self.operators = operators  # builtin operator names in execution order
        self.name = name
        self.sub = obj.subgraphs[0]
        if len(obj.subgraphs) != 1:
            raise GraphError(f"{len(obj.subgraphs)} subgraphs; MicroAI imports single-subgraph models")
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # IR shape of every node so far
        self.values: dict[int, _Value] = {}
        self.tensor_of: dict[str, int] = {}  # IR node -> the TFLite tensor it reproduces
        self.where = ""

    # ------------------------------------------------------------ driver
    def build(self) -> Graph:
        inputs, outputs = list(self.sub.inputs), list(self.sub.outputs)
        if len(inputs) != 1 or len(outputs) != 1:
            raise GraphError(f"{len(inputs)} inputs and {len(outputs)} outputs; MicroAI imports models with "
                             f"one of each")
        self.where = "model input"
        shape = self._shape(inputs[0])
        self._add(Node("input", "Input", attrs={"shape": list(ir_shape(shape))},
                       formats={"output": self._activation_format(inputs[0])}), inputs[0])
        for index, (op, op_name) in enumerate(zip(self.sub.operators or [], self.operators, strict=True)):
            self.where = f"operator {index} ({op_name})"
            handler = _HANDLERS.get(op_name)
            if handler is None:
                raise GraphError(f"{self.where}: operator {op_name} is not supported by the TFLite importer "
                                 f"(supported: {', '.join(sorted(_HANDLERS))})")
            handler(self, op, index)
        out = self.values.get(outputs[0])
        if out is None:
            raise GraphError("the model output is not computed by any operator")
        if out.index is not None:
            raise GraphError("the model output is a spatial tensor flattened channels-last; MicroAI's graph "
                             "flattens channels first (end the model with a FULLY_CONNECTED)")
        self._activation_format(outputs[0])
        widths = {f.width for n in self.nodes for k, f in n.formats.items() if k == "output"}
        g = Graph(self.nodes, out.ir, precision="int8" if widths == {8} else "int16x8", scheme="tflite",
                  metadata={"name": self.name, "source": "tflite", "operators": self.operators,
                            "tflite_tensors": {n: self._tensor_name(t) for n, t in self.tensor_of.items()}})
        g.validate()
        for n in g.nodes:
            if n.name in self.tensor_of:
                self._check_shape(n)
        return g

    # ------------------------------------------------------------ tensors
    def _tensor(self, i: int) -> Any:
        return self.sub.tensors[i]

    def _tensor_name(self, i: int) -> str:
        name = self._tensor(i).name
        return name.decode() if isinstance(name, bytes) else str(name)

    def _shape(self, i: int) -> tuple[int, ...]:
        """Shape without the batch dimension (which must be 1)."""
        shape = tuple(int(s) for s in self._tensor(i).shape)
        if not shape or shape[0] != 1:
            self._fail(f"tensor '{self._tensor_name(i)}' of shape {shape} has no batch dimension of 1")
        return shape[1:]

    def _constant(self, i: int) -> np.ndarray:
        t = self._tensor(i)
        data = self.obj.buffers[t.buffer].data if t.buffer < len(self.obj.buffers) else None
        if data is None:
            self._fail(f"input tensor '{self._tensor_name(i)}' is not a constant")
        dtype = {**{k: v[0] for k, v in _INT_TYPES.items()}, 0: np.float32}.get(t.type)
        if dtype is None:
            self._fail(f"constant '{self._tensor_name(i)}' has unsupported type {t.type}")
        return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype).reshape(
            [int(s) for s in t.shape])

    def _quantization(self, i: int) -> tuple[int, np.ndarray, np.ndarray, int]:
        t = self._tensor(i)
        if t.type not in _INT_TYPES:
            self._fail(f"tensor '{self._tensor_name(i)}' has type {t.type}: the importer reads quantized "
                       f"models (int8, or int16 activations with int8 weights), not float ones")
        q = t.quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            self._fail(f"tensor '{self._tensor_name(i)}' carries no quantization parameters")
        scales = np.asarray(q.scale, dtype=np.float32)
        zero_points = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scales))
        return _INT_TYPES[t.type][1], scales, zero_points, int(q.quantizedDimension)

    def _activation_format(self, i: int) -> AffineFormat:
        width, scale, zp, _ = self._quantization(i)
        if width not in (8, 16) or len(scale) != 1:
            self._fail(f"activation tensor '{self._tensor_name(i)}' is not a per-tensor int8/int16 tensor")
        if width == 16 and zp[0] != 0:
            self._fail(f"int16 tensor '{self._tensor_name(i)}' has zero point {zp[0]} (TFLite's 16x8 is "
                       f"symmetric)")
        return AffineFormat.per_tensor(width, float(scale[0]), int(zp[0]))

    def _weight_format(self, i: int, axis: int, what: str) -> tuple[AffineFormat, np.ndarray]:
        """(format, int values) of a constant weight tensor quantized along ``axis`` (or per tensor)."""
        width, scale, zp, dim = self._quantization(i)
        if len(scale) > 1 and dim != axis:
            self._fail(f"{what} '{self._tensor_name(i)}' is quantized along axis {dim}, expected {axis}")
        if np.any(zp != 0):
            self._fail(f"{what} '{self._tensor_name(i)}' has nonzero zero points (TFLite weights are "
                       f"symmetric)")
        return AffineFormat(width, tuple(scale), tuple(int(z) for z in zp)), self._constant(i)

    # ------------------------------------------------------------ nodes
    def _append(self, node: Node) -> Node:
        """Add ``node`` to the graph and compute its IR shape (GraphError naming the operator if none)."""
        try:
            shape = ops.of(node).shape(node, [self.shapes[i] for i in node.inputs])
        except GraphError as e:
            self._fail(str(e))
        self.shapes[node.name] = tuple(int(d) for d in shape)
        self.nodes.append(node)
        return node

    def _add(self, node: Node, tensor: int, index: np.ndarray | None = None) -> Node:
        """Append ``node`` as the IR node of TFLite tensor ``tensor``."""
        self._append(node)
        self.values[tensor] = _Value(node.name, index)
        self.tensor_of[node.name] = tensor
        return node

    def _value(self, tensor: int) -> _Value:
        value = self.values.get(tensor)
        if value is None:
            self._fail(f"reads tensor '{self._tensor_name(tensor)}', which no supported operator computes "
                       f"(a constant activation?)")
        return value

    def _ir_shape(self, value: _Value) -> tuple[int, ...]:
        return self.shapes[value.ir]

    def _spatial_axes(self, tensor: int, shape: tuple[int, ...]) -> list[int]:
        """The axes of TFLite tensor ``tensor`` (batch = axis 0) holding the spatial axes of its IR ``shape``:
        all between batch and channels, but the height of a 1D tensor that TFLite holds as (1, 1, L, C)."""
        tfl = self._shape(tensor)
        axes = list(range(1, len(tfl)))
        if len(tfl) == len(shape) + 1 and tfl[0] == 1:
            axes = axes[1:]
        if len(axes) != len(shape) - 1:
            self._fail(f"TFLite tensor of shape {(1, *tfl)} does not hold IR tensor {shape}")
        return axes

    def _spatial_input(self, op: Any) -> tuple[_Value, tuple[int, ...]]:
        """The first input as a spatial IR tensor (C, L) or (C, H, W), with its TFLite shape."""
        value = self._value(op.inputs[0])
        shape = self._ir_shape(value)
        if value.index is not None or len(shape) < 2:
            self._fail(f"input of IR shape {shape} is not a spatial tensor")
        return value, shape

    def _kernel_geometry(self, op: Any, opts: Any, shape: tuple[int, ...], kernel: tuple[int, int],
                         dilations: bool = True) -> dict[str, list[int]]:
        """stride and padding attributes of a 2D window op on an IR input of ``shape`` (1D when it has rank 2:
        the TFLite height is then 1 and must not be strided or padded)."""
        if dilations and (opts.dilationHFactor != 1 or opts.dilationWFactor != 1):
            self._fail(f"dilation {opts.dilationHFactor}x{opts.dilationWFactor} is not supported")
        strides, spatial = [opts.strideH, opts.strideW], list(shape[1:])
        if len(shape) == 2:
            if kernel[0] != 1 or strides[0] != 1:
                self._fail(f"window {kernel} / stride {strides} over a height-one (1D) tensor")
            strides, kernel, spatial = strides[1:], kernel[1:], spatial
        if opts.padding == _SAME:
            pad = [p for d in range(len(spatial)) for p in same_padding(spatial[d], kernel[d], strides[d])]
        elif opts.padding == _VALID:
            pad = [0] * 2 * len(spatial)
        else:
            self._fail(f"padding type {opts.padding}")
        return {"stride": [int(s) for s in strides], "padding": [int(p) for p in pad]}

    def _activation(self, opts: Any) -> dict[str, str]:
        code = getattr(opts, "fusedActivationFunction", 0)
        if code not in _ACTIVATIONS:
            self._fail(f"fused activation {code} (supported: NONE, RELU, RELU6)")
        return {"activation": _ACTIVATIONS[code]} if _ACTIVATIONS[code] else {}

    def _bias(self, op: Any, channels: int) -> tuple[AffineFormat, np.ndarray]:
        """The bias (int32, or int64 under int16 inputs) and its per-channel format; zeros when absent."""
        in_width = self._activation_format(op.inputs[0]).width
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            fmt, values = self._weight_format(op.inputs[2], 0, "bias")
            if fmt.width != (32 if in_width == 8 else 64):
                self._fail(f"{fmt.width}-bit bias with {in_width}-bit inputs (TFLM's int32 for int8, int64 "
                           f"for int16 inputs are supported)")
            return fmt, values.reshape(channels).astype(np.int64)
        width = 32 if in_width == 8 else 64
        return AffineFormat(width, (1.0,), (0,)), np.zeros(channels, dtype=np.int64)

    def _linear(self, op: Any, ir_op: str, kernel: np.ndarray, kernel_fmt: AffineFormat, attrs: dict,
                source: _Value | None = None) -> Node:
        bias_fmt, bias = self._bias(op, len(kernel))
        source = source or self._value(op.inputs[0])
        node = Node(f"{ir_op.lower()}_{len(self.nodes)}", ir_op, [source.ir], attrs,
                    {"kernel": kernel.astype(np.int32), "bias": bias.astype(np.int64 if bias_fmt.width == 64
                                                                             else np.int32)},
                    formats={"output": self._activation_format(op.outputs[0]), "kernel": kernel_fmt,
                             "bias": bias_fmt})
        return self._add(node, op.outputs[0])

    def _fail(self, what: str) -> NoReturn:
        raise GraphError(f"{self.where}: {what}")

    def _check_shape(self, node: Node) -> None:
        """The IR shape of ``node`` holds its TFLite tensor (channels first, unit axes apart)."""
        tensor = self.tensor_of[node.name]
        tfl = self._shape(tensor)
        same = (math.prod(tfl) == math.prod(node.shape) if self.values[tensor].index is not None
                else _squeezed(tfl) == _squeezed(_channels_last(node.shape)))
        if not same:
            raise GraphError(f"{node.describe()} has IR shape {node.shape}, TFLite tensor "
                             f"'{self._tensor_name(tensor)}' is {(1, *tfl)} (channels-last)")

    # ------------------------------------------------------------ operators
    def _conv_2d(self, op: Any, index: int) -> None:
        opts = op.builtinOptions
        value, shape = self._spatial_input(op)
        fmt, kernel = self._weight_format(op.inputs[1], 0, "filter")
        out_c, kh, kw, in_c = kernel.shape
        if in_c != shape[0]:
            self._fail(f"grouped convolution ({in_c} filter channels for {shape[0]} input channels)")
        attrs = {**self._kernel_geometry(op, opts, shape, (kh, kw)), **self._activation(opts)}
        ir_kernel = np.moveaxis(kernel, 3, 1)  # (out, in, kh, kw)
        dims = len(shape) - 1
        self._linear(op, f"Conv{dims}D", ir_kernel[:, :, 0] if dims == 1 else ir_kernel, fmt, attrs)

    def _depthwise_conv_2d(self, op: Any, index: int) -> None:
        opts = op.builtinOptions
        value, shape = self._spatial_input(op)
        fmt, kernel = self._weight_format(op.inputs[1], 3, "filter")
        _, kh, kw, out_c = kernel.shape
        if out_c != shape[0] * opts.depthMultiplier:
            self._fail(f"{out_c} filters for {shape[0]} channels x depth multiplier {opts.depthMultiplier}")
        attrs = {**self._kernel_geometry(op, opts, shape, (kh, kw)), **self._activation(opts)}
        ir_kernel = np.moveaxis(kernel, 3, 0)  # (out, 1, kh, kw)
        dims = len(shape) - 1
        self._linear(op, f"DepthwiseConv{dims}D", ir_kernel[:, :, 0] if dims == 1 else ir_kernel, fmt, attrs)

    def _fully_connected(self, op: Any, index: int) -> None:
        opts = op.builtinOptions
        if opts is not None and (opts.weightsFormat != 0 or opts.asymmetricQuantizeInputs):
            self._fail("shuffled weights or hybrid (asymmetric input) quantization")
        value = self._value(op.inputs[0])
        fmt, kernel = self._weight_format(op.inputs[1], 0, "weights")
        shape = self._ir_shape(value)
        if opts is not None and opts.keepNumDims and len(shape) > 1 and value.index is None:
            # applied to the last (channel) axis of every position: a pointwise convolution
            if kernel.shape[1] != shape[0]:
                self._fail(f"weights {kernel.shape} for {shape[0]} channels")
            dims = len(shape) - 1
            self._linear(op, f"Conv{dims}D", kernel.reshape(*kernel.shape, *[1] * dims), fmt,
                         {"stride": [1] * dims, "padding": [0] * 2 * dims, **self._activation(opts)})
            return
        order = value.index
        if len(shape) > 1:  # TFLite flattens its input channels-last: an IR Flatten + permuted columns
            flat = self._append(Node(f"flatten_{len(self.nodes)}", "Flatten", [value.ir],
                                     formats={"output": self._activation_format(op.inputs[0])}))
            value, order = _Value(flat.name), ir_index(shape).ravel()
            shape = self.shapes[flat.name]
        if kernel.shape[1] != math.prod(shape):
            self._fail(f"weights {kernel.shape} for an input of {math.prod(shape)} values")
        if order is not None:
            permuted = np.empty_like(kernel)
            permuted[:, order] = kernel
            kernel = permuted
        attrs = self._activation(opts) if opts is not None else {}
        self._linear(op, "Dense", kernel, fmt, attrs, source=value)

    def _pool(self, op: Any, kind: str) -> None:
        opts = op.builtinOptions
        value, shape = self._spatial_input(op)
        window = (opts.filterHeight, opts.filterWidth)
        geometry = self._kernel_geometry(op, opts, shape, window, dilations=False)
        pool = [opts.filterHeight, opts.filterWidth][-(len(shape) - 1):]
        attrs = {"pool_size": pool, "stride": geometry["stride"], **self._activation(opts)}
        if any(geometry["padding"]):
            attrs["padding"] = geometry["padding"]
        node = Node(f"{kind.lower()}pool_{len(self.nodes)}", f"{kind}Pool{len(shape) - 1}D", [value.ir],
                    attrs, formats={"output": self._activation_format(op.outputs[0])})
        self._add(node, op.outputs[0])

    def _max_pool_2d(self, op: Any, index: int) -> None:
        self._pool(op, "Max")

    def _average_pool_2d(self, op: Any, index: int) -> None:
        self._pool(op, "Avg")

    def _add_op(self, op: Any, index: int) -> None:
        a, b = (self._value(i) for i in op.inputs)
        if self._ir_shape(a) != self._ir_shape(b) or not _same_order(a.index, b.index):
            self._fail("broadcasting ADD (operands of different shapes) is not supported")
        node = Node(f"add_{len(self.nodes)}", "Add", [a.ir, b.ir], self._activation(op.builtinOptions),
                    formats={"output": self._activation_format(op.outputs[0])})
        self._add(node, op.outputs[0], a.index)

    def _mean(self, op: Any, index: int) -> None:
        value, shape = self._spatial_input(op)
        tfl = self._shape(op.inputs[0])
        axes = {int(a) % (len(tfl) + 1) for a in self._constant(op.inputs[1]).ravel()}
        spatial = set(self._spatial_axes(op.inputs[0], shape))
        extra = axes - spatial  # unit axes (the height of a 1D tensor) may be averaged too
        if not spatial <= axes or not axes <= set(range(1, len(tfl))) or any(tfl[a - 1] != 1 for a in extra):
            self._fail(f"MEAN over axes {sorted(axes)} of a {(1, *tfl)} tensor (only the spatial axes are "
                       f"supported)")
        node = Node(f"mean_{len(self.nodes)}", "Mean", [value.ir],
                    formats={"output": self._activation_format(op.outputs[0])})
        self._add(node, op.outputs[0])

    def _softmax(self, op: Any, index: int) -> None:
        value = self._value(op.inputs[0])
        if len(self._ir_shape(value)) != 1:
            self._fail("SOFTMAX over a spatial tensor (only vectors are supported)")
        if self._activation_format(op.inputs[0]).width != 8:
            self._fail("int16 SOFTMAX is not supported (TFLite's int8 softmax is)")
        beta = float(op.builtinOptions.beta) if op.builtinOptions is not None else 1.0
        node = Node(f"softmax_{len(self.nodes)}", "Softmax", [value.ir],
                    {"beta": beta} if beta != 1.0 else {},
                    formats={"output": self._activation_format(op.outputs[0])})
        self._add(node, op.outputs[0], value.index)

    def _pad(self, op: Any, index: int) -> None:
        value, shape = self._spatial_input(op)
        pads = self._constant(op.inputs[1]).reshape(-1, 2).astype(int)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:  # PADV2: the constant must be the zero point
            constant = int(self._constant(op.inputs[2]).ravel()[0])
            if constant != self._activation_format(op.inputs[0]).zero_point[0]:
                self._fail("PADV2 with a constant other than the zero point (real 0)")
        axes = self._spatial_axes(op.inputs[0], shape)
        if any(pads[a].any() for a in range(len(pads)) if a not in axes):
            self._fail(f"padding {pads.tolist()} outside the spatial axes")
        node = Node(f"pad_{len(self.nodes)}", f"ZeroPadding{len(shape) - 1}D", [value.ir],
                    {"padding": [int(v) for a in axes for v in pads[a]]},
                    formats={"output": self._activation_format(op.outputs[0])})
        self._add(node, op.outputs[0])

    def _reshape(self, op: Any, index: int) -> None:
        """Unit dimensions added or dropped: the same IR tensor; a spatial tensor to a vector: an IR Flatten
        whose TFLite element order (channels-last) is recorded for the FULLY_CONNECTED that reads it."""
        value = self._value(op.inputs[0])
        shape, out = self._ir_shape(value), self._shape(op.outputs[0])
        if self._activation_format(op.inputs[0]) != self._activation_format(op.outputs[0]):
            self._fail("RESHAPE that requantizes (different input and output formats)")
        spatial = len(shape) > 1 and value.index is None
        if spatial and len(out) > 1 and _squeezed(out) == _squeezed(_channels_last(shape)):
            self.values[op.outputs[0]] = value
        elif spatial and len(out) == 1:
            order = ir_index(shape).ravel()
            node = Node(f"flatten_{len(self.nodes)}", "Flatten", [value.ir],
                        formats={"output": self._activation_format(op.outputs[0])})
            self._add(node, op.outputs[0], None if math.prod(shape[1:]) == 1 else order)
        elif not spatial and len(_squeezed(out)) <= 1 and math.prod(out) == math.prod(shape):
            self.values[op.outputs[0]] = value
        else:
            self._fail(f"RESHAPE of IR shape {shape} to TFLite shape {(1, *out)} (only unit dimensions and "
                       f"flattening are supported)")


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape) if len(shape) < 2 else (*shape[1:], shape[0])


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _same_order(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


_HANDLERS: dict[str, Callable[[_Importer, Any, int], None]] = {
    "CONV_2D": _Importer._conv_2d,
    "DEPTHWISE_CONV_2D": _Importer._depthwise_conv_2d,
    "FULLY_CONNECTED": _Importer._fully_connected,
    "MAX_POOL_2D": _Importer._max_pool_2d,
    "AVERAGE_POOL_2D": _Importer._average_pool_2d,
    "ADD": _Importer._add_op,
    "MEAN": _Importer._mean,
    "SOFTMAX": _Importer._softmax,
    "PAD": _Importer._pad,
    "PADV2": _Importer._pad,
    "RESHAPE": _Importer._reshape,
    "EXPAND_DIMS": _Importer._reshape,
    "SQUEEZE": _Importer._reshape,
}
