"""PyTorch -> graph IR through torch.fx symbolic tracing (operators are recognised by type, not name).

The import has inference semantics: BatchNorm uses its running statistics and Dropout is
removed. Shapes are propagated through the traced model with a batch of two zero inputs, and
every IR shape is checked against PyTorch's, so a semantic mismatch fails the import.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Container
from typing import Any, NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from microai.graph.ir import Graph, GraphError, Node
from microai.ops.base import as_list

_SHAPE_PROBE_BATCH = 2  # > 1 so that a reshape that does not keep the batch dimension is caught


def from_torch(model: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> Graph:
    """Trace ``model`` for inputs of ``input_shape`` (no batch dimension) into a validated Graph.

    Unsupported modules, functions, methods or arguments raise GraphError naming the module or
    function and the fx node where it occurs.
    """
    input_shape = tuple(int(s) for s in input_shape)
    cls = type(model)
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # fx raises many exception types for untraceable control flow
        raise GraphError(f"{cls.__name__}: torch.fx cannot trace the model: {e}") from e
    gm.graph.eliminate_dead_code()  # e.g. a debugging ``x.mean()`` whose result is never used
    shapes = _probe_shapes(model, gm, input_shape)
    graph = _Importer(gm, shapes, cls.__name__).build()
    graph.metadata = {
        "name": name or cls.__name__,
        "source": "torch.fx",
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "torch_version": torch.__version__,
        "input_shape": list(input_shape),
        "torch_modules": graph.metadata["torch_modules"],
    }
    return graph


def is_shape_query(fx_node: fx.Node, tensors: Container[str]) -> bool:
    """``x.size(0)``, ``x.shape``, ``x.shape[0]``: shape arithmetic for view/reshape (which check the
    resulting shape), not a tensor. ``tensors``: the fx names of the tensors computed so far."""
    if fx_node.op == "call_method":
        return fx_node.target == "size"
    if fx_node.op != "call_function":
        return False
    if fx_node.target is getattr:
        return fx_node.args[1] == "shape"
    source = fx_node.args[0] if fx_node.args else None
    return fx_node.target is operator.getitem and isinstance(source, fx.Node) and source.name not in tensors


def pooling_module(fx_node: fx.Node) -> nn.Module | None:
    """The pooling module a functional call such as ``F.max_pool2d(x, 2)`` stands for (None for any
    other node); TypeError for arguments the module does not take."""
    if fx_node.op != "call_function" or fx_node.target not in _POOL_FUNCTIONS:
        return None
    module_type, names = _POOL_FUNCTIONS[fx_node.target]
    return module_type(**dict(zip(names, fx_node.args[1:], strict=False)), **fx_node.kwargs)


class _ShapeProbe(ShapeProp):
    """ShapeProp that remembers the node it is running (to name it when PyTorch fails there)."""

    node: fx.Node | None = None

    def run_node(self, n: fx.Node) -> Any:
        self.node = n
        return super().run_node(n)


def _probe_shapes(model: nn.Module, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> dict[str, tuple]:
    """fx node name -> output shape with batch (tensors only), probed in eval mode (modes restored)."""
    modes = {m: m.training for m in model.modules()}
    inputs = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    probe = _ShapeProbe(gm)
    try:
        gm.eval()
        with torch.no_grad():
            probe.propagate(torch.zeros(_SHAPE_PROBE_BATCH, *input_shape))
    except Exception as e:
        # ShapeProp wraps the error in its own RuntimeError: report torch's message and the node
        cause = e.__cause__ or e
        node = probe.node
        where = f" at fx node '{node.name}' ({node.op} {node.target})" if node is not None else ""
        takes = f" (the model takes {len(inputs)} inputs: {', '.join(inputs)})" if len(inputs) != 1 else ""
        raise GraphError(f"{type(model).__name__}: running the traced model on inputs of shape "
                         f"{input_shape} failed{where}{takes}: {type(cause).__name__}: {cause}") from e
    finally:
        for m, training in modes.items():
            m.train(training)
    return {n.name: tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes
            if isinstance(n.meta.get("tensor_meta"), torch.fx.passes.shape_prop.TensorMetadata)}


def _np(t: torch.Tensor | None, like: int | None = None, fill: float = 0.0) -> np.ndarray:
    """Parameter as float32 numpy; a missing one (``None``) becomes ``like`` copies of ``fill``."""
    if t is None:
        return np.full(like, fill, dtype=np.float32)
    return t.detach().cpu().to(torch.float32).numpy().copy()


class _Importer:
    """Walks the fx graph once; ``alias`` maps fx names of removed nodes to the IR node they forward."""

    def __init__(self, gm: fx.GraphModule, shapes: dict[str, tuple], model_name: str) -> None:
        self.gm = gm
        self.shapes = shapes
        self.model_name = model_name
        self.nodes: list[Node] = []
        self.alias: dict[str, str] = {}
        self.provenance: dict[str, str] = {}
        self.output: str | None = None

    # ------------------------------------------------------------ driver
    def build(self) -> Graph:
        for fx_node in self.gm.graph.nodes:
            self._visit(fx_node)
        if self.output is None:  # pragma: no cover - fx graphs always end with an output node
            raise GraphError(f"{self.model_name}: traced graph has no output")
        g = Graph(self.nodes, self.output, metadata={"torch_modules": self.provenance})
        g.validate()
        for n in g.nodes:
            expected = self.shapes.get(n.name)
            if expected is not None and tuple(expected[1:]) != n.shape:
                raise GraphError(f"{self.model_name}: {n.describe()} has IR shape {n.shape} but PyTorch "
                                 f"computes {tuple(expected[1:])}")
        return g

    def _visit(self, fx_node: fx.Node) -> None:
        if fx_node.op == "placeholder":
            if any(n.op == "Input" for n in self.nodes):
                self._fail(fx_node, "a second model input")
            shape = self.shapes[fx_node.name][1:]
            self._add(fx_node, "Input", [], {"shape": list(shape)})
        elif fx_node.op == "output":
            (result,) = fx_node.args
            if not isinstance(result, fx.Node) or result.name not in self.shapes:
                self._fail(fx_node, "a model output that is not a single tensor")
            self.output = self._ref(fx_node, result)
        elif fx_node.op == "call_module":
            module = self.gm.get_submodule(fx_node.target)
            for types, convert in _MODULES:
                if isinstance(module, types):
                    convert(self, fx_node, module)
                    if fx_node.name not in self.alias:
                        self.provenance[fx_node.name] = str(fx_node.target)
                    return
            self._fail(fx_node, f"module {type(module).__name__}")
        elif is_shape_query(fx_node, self.shapes):
            return
        elif fx_node.op == "call_function":
            convert = _FUNCTIONS.get(fx_node.target)
            if convert is None:
                self._fail(fx_node, f"function {getattr(fx_node.target, '__name__', fx_node.target)}")
            convert(self, fx_node)
        elif fx_node.op == "call_method":
            convert = _METHODS.get(fx_node.target)
            if convert is None:
                self._fail(fx_node, f"tensor method .{fx_node.target}()")
            convert(self, fx_node)
        else:
            self._fail(fx_node, f"fx operation '{fx_node.op}' ({fx_node.target})")

    # ------------------------------------------------------------ helpers
    def _fail(self, fx_node: fx.Node, what: str, why: str = "unsupported") -> NoReturn:
        where = f"fx node '{fx_node.name}'"
        if fx_node.op == "call_module":
            where += f" (module '{fx_node.target}')"
        raise GraphError(f"{self.model_name}: {why}: {what} at {where}: {fx_node.format_node()}")

    def _ref(self, fx_node: fx.Node, arg: Any) -> str:
        """IR name of the tensor an fx argument refers to."""
        if not isinstance(arg, fx.Node) or arg.name not in self.shapes:
            self._fail(fx_node, f"non-tensor operand {arg!r}")
        return self.alias.get(arg.name, arg.name)

    def _shape(self, arg: fx.Node) -> tuple[int, ...]:
        """Shape without batch of the tensor produced by fx node ``arg``."""
        return tuple(self.shapes[arg.name][1:])

    def _add(self, fx_node: fx.Node, op: str, inputs: list[str], attrs: dict | None = None,
             weights: dict[str, np.ndarray] | None = None) -> None:
        self.nodes.append(Node(fx_node.name, op, inputs, attrs or {}, weights or {}))

    def _unary(self, fx_node: fx.Node, op: str, attrs: dict | None = None,
               weights: dict[str, np.ndarray] | None = None) -> None:
        self._add(fx_node, op, [self._ref(fx_node, fx_node.args[0])], attrs, weights)

    def _forward(self, fx_node: fx.Node) -> None:
        """A node that computes nothing at inference (Identity, Dropout): consumers read its input."""
        self.alias[fx_node.name] = self._ref(fx_node, fx_node.args[0])

    def _arg(self, fx_node: fx.Node, index: int, key: str, default: Any) -> Any:
        if len(fx_node.args) > index:
            return fx_node.args[index]
        return fx_node.kwargs.get(key, default)

    def _check_kwargs(self, fx_node: fx.Node, allowed: set[str]) -> None:
        extra = sorted(set(fx_node.kwargs) - allowed)
        if extra:
            self._fail(fx_node, f"arguments {extra} of {fx_node.target}")

    # ------------------------------------------------------------ modules
    def conv(self, fx_node: fx.Node, m: nn.Conv1d | nn.Conv2d) -> None:
        dims = 1 if isinstance(m, nn.Conv1d) else 2
        what = type(m).__name__
        if m.groups != 1:
            self._fail(fx_node, f"{what} with groups={m.groups}")
        if any(d != 1 for d in m.dilation):
            self._fail(fx_node, f"{what} with dilation={m.dilation}")
        if m.padding_mode != "zeros":
            self._fail(fx_node, f"{what} with padding_mode='{m.padding_mode}'")
        if m.padding == "valid":
            pad = [0] * (2 * dims)
        elif m.padding == "same":
            totals = [k - 1 for k in m.kernel_size]  # PyTorch puts the odd extra sample on the right
            pad = [p for t in totals for p in (t // 2, t - t // 2)]
        else:
            pad = [p for p in as_list(m.padding, dims) for _ in range(2)]
        stride = as_list(m.stride, dims)
        self._unary(fx_node, f"Conv{dims}D",
                    {"stride": stride[0] if dims == 1 else stride, "padding": pad},
                    {"kernel": _np(m.weight), "bias": _np(m.bias, m.out_channels)})

    def linear(self, fx_node: fx.Node, m: nn.Linear) -> None:
        self._unary(fx_node, "Dense", {}, {"kernel": _np(m.weight), "bias": _np(m.bias, m.out_features)})

    def pool(self, fx_node: fx.Node, m: nn.Module) -> None:
        is_max = isinstance(m, (nn.MaxPool1d, nn.MaxPool2d))
        dims = 1 if isinstance(m, (nn.MaxPool1d, nn.AvgPool1d)) else 2
        what = type(m).__name__
        if any(p != 0 for p in as_list(m.padding, dims)):
            self._fail(fx_node, f"{what} with padding={m.padding}")
        if m.ceil_mode:
            self._fail(fx_node, f"{what} with ceil_mode=True")
        if is_max and (any(d != 1 for d in as_list(m.dilation, dims)) or m.return_indices):
            self._fail(fx_node, f"{what} with dilation or return_indices")
        if not is_max and getattr(m, "divisor_override", None) is not None:  # AvgPool1d has none
            self._fail(fx_node, f"{what} with divisor_override")
        pool = as_list(m.kernel_size, dims)
        stride = as_list(m.stride if m.stride is not None else m.kernel_size, dims)
        self._pool(fx_node, is_max, dims, pool, stride)

    def adaptive_pool(self, fx_node: fx.Node, m: nn.Module) -> None:
        is_max = isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d))
        dims = 1 if isinstance(m, (nn.AdaptiveMaxPool1d, nn.AdaptiveAvgPool1d)) else 2
        if is_max and m.return_indices:
            self._fail(fx_node, f"{type(m).__name__} with return_indices")
        spatial = self._shape(fx_node.args[0])[1:]
        wanted = [spatial[d] if o is None else int(o) for d, o in
                  enumerate([m.output_size] * dims if isinstance(m.output_size, int) or m.output_size is None
                            else m.output_size)]
        if any(s % o for s, o in zip(spatial, wanted, strict=True)):
            self._fail(fx_node, f"{type(m).__name__} to {wanted} from input size {list(spatial)}",
                       "unsupported (output size must divide the input size)")
        pool = [s // o for s, o in zip(spatial, wanted, strict=True)]
        self._pool(fx_node, is_max, dims, pool, pool)

    def _pool(self, fx_node: fx.Node, is_max: bool, dims: int, pool: list[int], stride: list[int]) -> None:
        op = f"{'Max' if is_max else 'Avg'}Pool{dims}D"
        if dims == 1:
            self._unary(fx_node, op, {"pool_size": pool[0], "stride": stride[0]})
        else:
            self._unary(fx_node, op, {"pool_size": pool, "stride": stride})

    def batch_norm(self, fx_node: fx.Node, m: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
        if m.running_mean is None or m.running_var is None:
            self._fail(fx_node, f"{type(m).__name__} without running statistics (track_running_stats=False)")
        n = m.num_features
        self._unary(fx_node, "BatchNorm", {"eps": float(m.eps)},
                    {"mean": _np(m.running_mean), "var": _np(m.running_var),
                     "gamma": _np(m.weight, n, 1.0), "beta": _np(m.bias, n)})

    def flatten_module(self, fx_node: fx.Node, m: nn.Flatten) -> None:
        if m.start_dim != 1 or m.end_dim != -1:
            self._fail(fx_node, f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})")
        self._unary(fx_node, "Flatten")

    def constant_pad(self, fx_node: fx.Node, m: nn.ConstantPad1d | nn.ConstantPad2d) -> None:
        if m.value != 0:
            self._fail(fx_node, f"{type(m).__name__} with value {m.value}")
        self._zero_pad(fx_node, list(m.padding))

    def _zero_pad(self, fx_node: fx.Node, torch_pad: list[int]) -> None:
        """PyTorch order (left, right[, top, bottom]) -> IR [l, r] / [t, b, l, r]."""
        if any(p < 0 for p in torch_pad):
            self._fail(fx_node, f"negative padding {torch_pad}")
        if len(torch_pad) == 2:
            self._unary(fx_node, "ZeroPadding1D", {"padding": torch_pad})
        else:
            left, right, top, bottom = torch_pad
            self._unary(fx_node, "ZeroPadding2D", {"padding": [top, bottom, left, right]})

    def softmax_module(self, fx_node: fx.Node, m: nn.Softmax) -> None:
        self._softmax(fx_node, m.dim)

    def _softmax(self, fx_node: fx.Node, dim: Any) -> None:
        shape = self._shape(fx_node.args[0])
        if len(shape) != 1 or dim not in (1, -1, None):  # None: PyTorch picks dim 1 for 2D
            self._fail(fx_node, f"softmax over dim={dim} of a tensor of shape {shape}",
                       "unsupported (only over the class dimension of a (batch, classes) tensor)")
        self._unary(fx_node, "Softmax")

    def relu(self, fx_node: fx.Node, _module: nn.Module | None = None) -> None:
        self._check_kwargs(fx_node, {"inplace"})
        self._unary(fx_node, "ReLU")

    def identity(self, fx_node: fx.Node, _module: nn.Module | None = None) -> None:
        self._forward(fx_node)

    # ------------------------------------------------------------ functions and methods
    def add(self, fx_node: fx.Node) -> None:
        self._check_kwargs(fx_node, set())
        if len(fx_node.args) != 2:
            self._fail(fx_node, f"add with arguments {fx_node.args}")
        a, b = (self._ref(fx_node, v) for v in fx_node.args)
        if self._shape(fx_node.args[0]) != self._shape(fx_node.args[1]):
            self._fail(fx_node, "add of tensors of different shapes (broadcasting)")
        self._add(fx_node, "Add", [a, b])

    def flatten_call(self, fx_node: fx.Node) -> None:
        self._check_kwargs(fx_node, {"start_dim", "end_dim"})
        start = self._arg(fx_node, 1, "start_dim", 0)
        end = self._arg(fx_node, 2, "end_dim", -1)
        if start != 1 or end != -1:
            self._fail(fx_node, f"flatten(start_dim={start}, end_dim={end}) (only start_dim=1 keeps batches)")
        self._unary(fx_node, "Flatten")

    def reshape(self, fx_node: fx.Node) -> None:
        """``x.view(x.size(0), -1)``, ``x.squeeze(-1)`` after a global pool and equivalents: a reshape
        that keeps the batch and flattens the rest."""
        source = fx_node.args[0]
        out = self.shapes.get(fx_node.name)
        if out is None or out[0] != _SHAPE_PROBE_BATCH or out[1:] != (math.prod(self._shape(source)),):
            what = getattr(fx_node.target, "__name__", fx_node.target)
            self._fail(fx_node, f".{what}() to {out}: not a flatten keeping the batch dimension")
        self._unary(fx_node, "Flatten")

    def softmax_call(self, fx_node: fx.Node) -> None:
        self._check_kwargs(fx_node, {"dim", "dtype", "_stacklevel"})
        self._softmax(fx_node, self._arg(fx_node, 1, "dim", None))

    def dropout_call(self, fx_node: fx.Node) -> None:
        self._forward(fx_node)

    def pool_call(self, fx_node: fx.Node) -> None:
        """``F.max_pool2d(x, 2)`` and friends: the equivalent pooling module, then the module rules."""
        try:
            module = pooling_module(fx_node)
        except TypeError as e:
            self._fail(fx_node, f"{fx_node.target.__name__} with arguments {fx_node.args[1:]} "
                       f"{fx_node.kwargs} ({e})")
        if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d,
                               nn.AdaptiveAvgPool2d)):
            self.adaptive_pool(fx_node, module)
        else:
            self.pool(fx_node, module)

    def pad_call(self, fx_node: fx.Node) -> None:
        self._check_kwargs(fx_node, {"pad", "mode", "value"})
        pad = list(self._arg(fx_node, 1, "pad", []))
        mode, value = self._arg(fx_node, 2, "mode", "constant"), self._arg(fx_node, 3, "value", None)
        spatial = len(self._shape(fx_node.args[0])) - 1
        if mode != "constant" or value not in (None, 0, 0.0) or len(pad) != 2 * spatial:
            self._fail(fx_node, f"pad({pad}, mode={mode!r}, value={value}) of a {spatial}D signal",
                       "unsupported (only zero padding of every spatial dimension)")
        self._zero_pad(fx_node, pad)

    def mean_call(self, fx_node: fx.Node) -> None:
        """``x.mean(-1)``, ``x.mean((2, 3))``: global average pooling (+ Flatten unless keepdim)."""
        self._check_kwargs(fx_node, {"dim", "keepdim", "dtype"})
        shape = self._shape(fx_node.args[0])
        dim = self._arg(fx_node, 1, "dim", None)
        keepdim = self._arg(fx_node, 2, "keepdim", False)
        dims = [dim] if isinstance(dim, int) else list(dim or [])
        rank = len(shape) + 1
        spatial = list(range(2, rank))
        if len(shape) not in (2, 3) or sorted(d % rank for d in dims) != spatial:
            self._fail(fx_node, f"mean over dim={dim} of a tensor of shape {shape}",
                       "unsupported (only over every spatial dimension, i.e. global average pooling)")
        op = f"AvgPool{len(spatial)}D"
        size: int | list[int] = shape[1] if len(spatial) == 1 else list(shape[1:])
        pooled = Node(fx_node.name if keepdim else f"{fx_node.name}_pool", op,
                      [self._ref(fx_node, fx_node.args[0])], {"pool_size": size, "stride": size})
        self.nodes.append(pooled)
        if not keepdim:
            self.nodes.append(Node(fx_node.name, "Flatten", [pooled.name]))


_MODULES: list[tuple[type | tuple[type, ...], Callable[[_Importer, fx.Node, Any], None]]] = [
    ((nn.Conv1d, nn.Conv2d), _Importer.conv),
    (nn.Linear, _Importer.linear),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d), _Importer.pool),
    ((nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d),
     _Importer.adaptive_pool),
    (nn.ReLU, _Importer.relu),
    ((nn.BatchNorm1d, nn.BatchNorm2d), _Importer.batch_norm),
    (nn.Flatten, _Importer.flatten_module),
    ((nn.ConstantPad1d, nn.ConstantPad2d), _Importer.constant_pad),  # includes ZeroPad1d/2d
    (nn.Softmax, _Importer.softmax_module),
    ((nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d), _Importer.identity),
]

_FUNCTIONS: dict[Any, Callable[[_Importer, fx.Node], None]] = {
    F.relu: _Importer.relu,
    torch.relu: _Importer.relu,
    operator.add: _Importer.add,
    torch.add: _Importer.add,
    torch.flatten: _Importer.flatten_call,
    F.softmax: _Importer.softmax_call,
    torch.softmax: _Importer.softmax_call,
    F.dropout: _Importer.dropout_call,
    torch.reshape: _Importer.reshape,
    torch.squeeze: _Importer.reshape,
    torch.mean: _Importer.mean_call,
    F.pad: _Importer.pad_call,
}

_MAX_POOL_ARGS = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
_AVG_POOL_ARGS = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]
_POOL_FUNCTIONS: dict[Any, tuple[type[nn.Module], list[str]]] = {
    F.max_pool1d: (nn.MaxPool1d, _MAX_POOL_ARGS),
    F.max_pool2d: (nn.MaxPool2d, _MAX_POOL_ARGS),
    F.avg_pool1d: (nn.AvgPool1d, _AVG_POOL_ARGS[:5]),
    F.avg_pool2d: (nn.AvgPool2d, _AVG_POOL_ARGS),
    F.adaptive_max_pool1d: (nn.AdaptiveMaxPool1d, ["output_size", "return_indices"]),
    F.adaptive_max_pool2d: (nn.AdaptiveMaxPool2d, ["output_size", "return_indices"]),
    F.adaptive_avg_pool1d: (nn.AdaptiveAvgPool1d, ["output_size"]),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ["output_size"]),
}
_FUNCTIONS.update(dict.fromkeys(_POOL_FUNCTIONS, _Importer.pool_call))

_METHODS: dict[str, Callable[[_Importer, fx.Node], None]] = {
    "relu": _Importer.relu,
    "add": _Importer.add,
    "flatten": _Importer.flatten_call,
    "view": _Importer.reshape,
    "reshape": _Importer.reshape,
    "softmax": _Importer.softmax_call,
    "squeeze": _Importer.reshape,
    "mean": _Importer.mean_call,
}
