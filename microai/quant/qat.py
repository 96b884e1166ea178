"""Quantization-aware training (the paper's int8 method) by rewriting the model's torch.fx graph.

``prepare_qat`` folds BatchNorm into the preceding convolution, traces the model and inserts
fake quantization where ``docs/arithmetic.md`` quantizes: after the network input, around every
Conv/Linear (kernel, bias, output) and after every Add. MaxPool, AvgPool (whose division is rounded
like the integer one), ReLU, zero padding, Flatten, Identity and Dropout keep their input's format; a
ReLU that alone reads a layer's output is folded into the layer (``QuantLayer.relu``).
It works for any model built from these operators, in their module or functional spellings.

Formats follow the paper: ``m = 1 + floor(log2(max|x|))``, ``n = w - m - 1``; activation ranges are
moving averages of the batch ``max|x|`` re-estimated at every training step, weight ranges are the
exact ``max|w|``; switching to eval mode freezes them. Training splits each batch into shards
(``microai.train.parallel``): a shard quantizes with the range updated by its own ``max|x|``, and the
step keeps the largest, which is the average updated with the batch's ``max|x|``. ``export_qat``
writes the quantized graph IR with these frozen formats; the integer reference executor reproduces
the eval-mode QAT model.
"""

from __future__ import annotations

import copy
import math
import operator
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.optimization import fuse

from microai import ops
from microai.graph.ir import Graph, GraphError, QFormat
from microai.graph.passes import simplify
from microai.graph.torch_import import from_torch, is_shape_query, pooling_module
from microai.quant.formats import QUANT_ROUNDINGS, check_width, quantize_array
from microai.quant.qat_modules import (
    DEFAULT_QUANT_ROUNDING,
    SHIFT_ROUNDING,
    FakeQuantizer,
    QuantAverage,
    QuantLayer,
    StepValues,
)
from microai.train import TrainConfig, train
from microai.train.loop import as_tensors, eval_mode
from microai.train.parallel import single_threaded_kernels

GRANULARITIES = ("layer", "network")
CALIBRATION_SAMPLES = 2048
CALIBRATION_BATCH = 256

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
# Operators whose output keeps the input's format (zero padding included: 0 is exact in every format).
_PASS_MODULES = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.Flatten,
                 nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.ConstantPad1d, nn.ConstantPad2d)
_RELU_FUNCTIONS = (F.relu, torch.relu)
_PASS_FUNCTIONS = (*_RELU_FUNCTIONS, torch.flatten, F.dropout, F.pad, torch.squeeze, torch.reshape)
_PASS_METHODS = ("relu", "flatten", "view", "reshape", "squeeze")
_ADD_FUNCTIONS = (operator.add, torch.add)
# Average pooling: kept format, rounded division (QuantAverage). Value: the pooling's dimensions, or
# None when the window follows from the shapes (adaptive pooling). Functional pooling calls are read as
# these modules (torch_import.pooling_module); ``mean`` is global average pooling.
_AVG_MODULES = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AdaptiveAvgPool1d: None, nn.AdaptiveAvgPool2d: None}


def _window(kernel_size: int | tuple[int, ...], dims: int) -> int:
    return kernel_size ** dims if isinstance(kernel_size, int) else math.prod(kernel_size)


class QATError(ValueError):
    """A model that cannot be prepared for or exported from QAT; the message names the layer."""


@dataclass(frozen=True)
class QATSettings:
    """What a QAT model was prepared with (validated by :func:`prepare_qat`)."""

    width: int
    granularity: str
    rounding: str
    quant_rounding: str
    model_name: str


class QATModel(nn.Module):
    """The fake-quantized network plus the float model it shares its parameters with.

    ``quantizers`` maps fx node names of the float model (which are the graph IR node names) to the
    name of the module that fixes that node's output format in ``network``.
    """

    lifts_to_2d = True  # microai.train.lift: forward calls ``network``
    per_example = True  # microai.train.shard: likewise (the network's modules say whether they are)

    def __init__(self, float_model: fx.GraphModule, network: fx.GraphModule, quantizers: dict[str, str],
                 settings: QATSettings) -> None:
        super().__init__()
        self.float_model = float_model
        self.network = network
        self.quantizers = quantizers
        self.settings = settings
        #: the layers whose kernels and biases are fake-quantized once per training step (a plain
        #: list: the network's modules, fixed by prepare_qat)
        self.preparing_layers = _preparing_layers(network)
        self.step_values = StepValues(self.preparing_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def train(self, mode: bool = True) -> QATModel:
        """Eval mode freezes the formats (per-network: every member takes the group's final format)."""
        super().train(mode)
        if not mode:
            for q in self.fake_quantizers():
                q.refresh()
        return self

    def fake_quantizers(self) -> list[FakeQuantizer]:
        return [m for m in self.network.modules() if isinstance(m, FakeQuantizer)]

    @property
    def prepares_steps(self) -> bool:
        """microai.train.parallel: whether kernels and biases are fake-quantized once per training step,
        all layers at once (:meth:`prepare_step`; per layer granularity only)."""
        return bool(self.preparing_layers)

    def prepare_step(self) -> None:
        self.step_values.update()

    def prepared_parameters(self) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """microai.train.parallel: (parameter, buffer) pairs for the parameters whose values replicas
        compute with at a prepared step: the kernels and biases of the preparing layers, from the
        buffers :meth:`prepare_step` writes."""
        pairs = []
        for layer in self.preparing_layers:
            pairs.append((layer.layer.weight, layer.kernel_values))
            if layer.layer.bias is not None:  # else the layer reads bias_values itself
                pairs.append((layer.layer.bias, layer.bias_values))
        return pairs

    @property
    def prepared_step(self) -> bool:
        """Set on the replicas of a sharded step: their layers read the values prepare_step gave them."""
        return all(m.prepared_step for m in self.preparing_layers)

    @prepared_step.setter
    def prepared_step(self, value: bool) -> None:
        for m in self.preparing_layers:
            m.prepared_step = value

    def output_quantizer(self, fx_name: str) -> FakeQuantizer:
        module = self.network.get_submodule(self.quantizers[fx_name])
        return module.output_q if isinstance(module, QuantLayer) else module


def _preparing_layers(network: nn.Module) -> list[QuantLayer]:
    """The layers that can take part in QATModel.prepare_step: not those sharing a parameter (a module
    called twice), since a replica's prepared layer writes its values into its parameters, which
    would change under the tensors the other call saved for the backward pass."""
    layers = [m for m in network.modules() if isinstance(m, QuantLayer) and m.quantizes_once_per_step]
    uses = Counter(id(p) for m in layers for p in m.layer.parameters())
    return [m for m in layers if all(uses[id(p)] == 1 for p in m.layer.parameters())]


# ------------------------------------------------------------------------------------ prepare
def prepare_qat(model: nn.Module, width: int, granularity: str = "layer",
                rounding: str = "floor", quant_rounding: str | None = None) -> QATModel:
    """A fake-quantized copy of ``model`` (which is left untouched); BatchNorm after a conv is folded.

    ``rounding`` is the graph's shift rounding, ``quant_rounding`` the float -> fixed conversion of
    inputs and weights (default: ``trunc`` with ``floor`` shifts as in the paper, else ``nearest``).
    """
    width = check_width(width)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got '{granularity}'")
    if rounding not in SHIFT_ROUNDING:
        raise ValueError(f"rounding must be one of {tuple(SHIFT_ROUNDING)}, got '{rounding}'")
    quant_rounding = DEFAULT_QUANT_ROUNDING[rounding] if quant_rounding is None else quant_rounding
    if quant_rounding not in QUANT_ROUNDINGS:
        raise ValueError(f"quant_rounding must be one of {QUANT_ROUNDINGS}, got '{quant_rounding}'")
    settings = QATSettings(width, granularity, rounding, quant_rounding, type(model).__name__)
    try:
        float_model = fuse(copy.deepcopy(model).eval(), inplace=True)
        network = fx.symbolic_trace(float_model)
        network.graph.eliminate_dead_code()
    except Exception as e:  # fx raises many exception types for untraceable models
        raise QATError(f"{settings.model_name}: torch.fx cannot trace the model: {e}") from e
    return _Rewriter(network, settings).build(float_model)


class _Rewriter:
    """Inserts the quantizers in one pass over the traced graph (in topological order)."""

    def __init__(self, network: fx.GraphModule, settings: QATSettings) -> None:
        self.gm = network
        self.settings = settings
        self.modules = dict(network.named_modules())
        #: fx node name -> qualified name of the ``frac`` buffer giving that tensor's format
        self.frac_of: dict[str, str] = {}
        self.quantizers: dict[str, str] = {}
        self.group = torch.zeros(self._count_quantizers(), dtype=torch.float64) \
            if settings.granularity == "network" else None
        self.slots = 0

    def _count_quantizers(self) -> int:
        return sum(3 if self._is_layer(n) else 1 for n in self.gm.graph.nodes
                   if n.op == "placeholder" or self._is_layer(n) or self._is_add(n))

    def _is_layer(self, n: fx.Node) -> bool:
        return n.op == "call_module" and isinstance(self.modules[n.target], _LAYERS)

    @staticmethod
    def _is_add(n: fx.Node) -> bool:
        return (n.op == "call_function" and n.target in _ADD_FUNCTIONS) or (n.op == "call_method"
                                                                           and n.target == "add")

    def _module(self, n: fx.Node) -> nn.Module | None:
        """The module ``n`` calls, or the pooling module a functional pooling call stands for."""
        return self.modules[n.target] if n.op == "call_module" else pooling_module(n)

    def _average(self, n: fx.Node) -> tuple[Any, int | None, tuple, dict] | None:
        """(pooling callable, window size or None, its further arguments and keyword arguments) when
        ``n`` is an average pooling, else None."""
        module = self._module(n)
        if type(module) in _AVG_MODULES:
            dims = _AVG_MODULES[type(module)]
            return module, None if dims is None else _window(module.kernel_size, dims), (), {}
        if (n.op, n.target) in (("call_function", torch.mean), ("call_method", "mean")):
            return torch.Tensor.mean, None, n.args[1:], dict(n.kwargs)
        return None

    def _is_pass_through(self, n: fx.Node) -> bool:
        module = self._module(n)
        if module is not None:
            return isinstance(module, _PASS_MODULES)
        if n.op == "call_function":
            return n.target in _PASS_FUNCTIONS
        return n.op == "call_method" and n.target in _PASS_METHODS

    def _is_relu(self, n: fx.Node) -> bool:
        if n.op == "call_module":
            return type(self.modules[n.target]) is nn.ReLU
        return (n.op == "call_function" and n.target in _RELU_FUNCTIONS) or (n.op == "call_method"
                                                                            and n.target == "relu")

    def _layer_read_only_by(self, arg: Any, user: fx.Node) -> QuantLayer | None:
        """The QuantLayer that computes ``arg`` when ``user`` is all that reads it."""
        if not isinstance(arg, fx.Node) or arg.op != "call_module" or list(arg.users) != [user]:
            return None
        module = self.gm.get_submodule(arg.target)
        return module if isinstance(module, QuantLayer) and not module.relu else None

    def _quantizer(self, rounding: str, observe: str, in_place: bool = False) -> FakeQuantizer:
        slot = self.slots
        self.slots += 1
        return FakeQuantizer(self.settings.width, rounding, observe, group_ranges=self.group, slot=slot,
                             in_place=in_place)

    def _fail(self, n: fx.Node, what: str) -> QATError:
        target = ""
        if n.op == "call_module":
            target = f" (module '{n.target}', {type(self.modules[n.target]).__name__})"
        return QATError(f"{self.settings.model_name}: QAT does not support {what} at fx node "
                        f"'{n.name}'{target}: {n.format_node()}")

    def _source(self, user: fx.Node, arg: Any) -> str:
        if not isinstance(arg, fx.Node) or arg.name not in self.frac_of:
            raise self._fail(user, f"operand {arg!r} that is not a quantized tensor")
        return self.frac_of[arg.name]

    def _quantize_after(self, n: fx.Node, module_name: str, quantizer: FakeQuantizer) -> None:
        self.gm.add_submodule(module_name, quantizer)
        with self.gm.graph.inserting_after(n):
            q = self.gm.graph.call_module(module_name, (n,))
        n.replace_all_uses_with(q, delete_user_cb=lambda user: user is not q)
        self.frac_of[q.name] = f"{module_name}.frac"
        self.frac_of[n.name] = f"{module_name}.frac"
        self.quantizers[n.name] = module_name

    def build(self, float_model: fx.GraphModule) -> QATModel:
        quant_rounding = self.settings.quant_rounding
        shift_rounding = SHIFT_ROUNDING[self.settings.rounding]
        for n in list(self.gm.graph.nodes):
            if n.op == "placeholder":
                if self.quantizers:
                    raise self._fail(n, "a second model input")
                self._quantize_after(n, "qat_input", self._quantizer(quant_rounding, "ema"))
            elif n.op == "output":
                continue
            elif self._is_layer(n):
                source = self._source(n, n.args[0])
                layer = QuantLayer(self.modules[n.target], kernel=self._quantizer(quant_rounding, "exact"),
                                   bias=self._quantizer(quant_rounding, "exact"),
                                   output=self._quantizer(shift_rounding, "ema", in_place=True),
                                   shift_rounding=shift_rounding)
                module_name = f"qat_{n.name}"
                self.gm.add_submodule(module_name, layer)
                with self.gm.graph.inserting_before(n):
                    frac = self.gm.graph.get_attr(source)
                n.target, n.args, n.kwargs = module_name, (n.args[0], frac), {}
                self.frac_of[n.name] = f"{module_name}.output_q.frac"
                self.quantizers[n.name] = module_name
            elif self._is_add(n):
                for arg in n.args:
                    self._source(n, arg)
                # the sum is read by its quantizer only (_quantize_after), which can round it in place
                quantizer = self._quantizer(shift_rounding, "ema", in_place=True)
                self._quantize_after(n, f"qat_{n.name}", quantizer)
            elif self._is_relu(n) and (layer := self._layer_read_only_by(n.args[0], n)) is not None:
                layer.relu = True  # the ReLU after its quantizer (see QuantLayer)
                n.replace_all_uses_with(n.args[0])
                self.gm.graph.erase_node(n)
            elif self._is_pass_through(n):
                self.frac_of[n.name] = self._source(n, n.args[0])
            elif is_shape_query(n, self.frac_of):
                continue
            elif (average := self._average(n)) is not None:
                pool, count, args, kwargs = average
                source = self._source(n, n.args[0])
                module_name = f"qat_{n.name}"
                self.gm.add_submodule(module_name, QuantAverage(pool, count, self.settings.rounding))
                with self.gm.graph.inserting_before(n):
                    frac = self.gm.graph.get_attr(source)
                n.op, n.target = "call_module", module_name
                n.args, n.kwargs = (n.args[0], frac, *args), kwargs
                self.frac_of[n.name] = source
            else:
                what = type(self.modules[n.target]).__name__ if n.op == "call_module" else str(n.target)
                raise self._fail(n, f"{n.op} {what}")
        self.gm.delete_all_unused_submodules()
        self.gm.graph.lint()
        self.gm.recompile()
        return QATModel(float_model, self.gm, self.quantizers, self.settings)


# ------------------------------------------------------------------------------------ training
def calibrate(qat_model: QATModel, x: np.ndarray, seed: int) -> None:
    """Initialise the ranges on up to ``CALIBRATION_SAMPLES`` random training inputs (no weight update)."""
    xt, _ = as_tensors(x, None, "calibration set")
    rng = np.random.default_rng(seed)
    idx = torch.from_numpy(np.sort(rng.permutation(len(xt))[:CALIBRATION_SAMPLES]))
    qat_model.train()
    with torch.no_grad(), single_threaded_kernels():  # the ranges do not depend on the thread count
        for start in range(0, len(idx), CALIBRATION_BATCH):
            qat_model(xt[idx[start:start + CALIBRATION_BATCH]])
    qat_model.eval()


def train_qat(model: nn.Module, x_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig, width: int,
              seed: int, granularity: str = "layer", rounding: str = "floor", progress: bool = True,
              quant_rounding: str | None = None) -> tuple[QATModel, dict]:
    """Fine-tune a fake-quantized copy of the trained float ``model``; return it (eval mode) and the history.

    ``rounding`` and ``quant_rounding`` as for :func:`prepare_qat`. A model that :func:`export_qat` could
    not convert (e.g. a mean over channels) fails here, before any training time is spent.
    """
    from_torch(model, tuple(x_train.shape[1:]))
    qat_model = prepare_qat(model, width, granularity, rounding, quant_rounding)
    calibrate(qat_model, x_train, seed)
    history = train(qat_model, x_train, y_train, cfg, seed, progress=progress)
    return qat_model.eval(), history


# ------------------------------------------------------------------------------------ export

def export_qat(qat_model: QATModel, input_shape: tuple[int, ...], width: int) -> Graph:
    """The quantized graph IR of ``qat_model`` with its frozen formats and fixed-point weights.

    The graph is simplified like PTQ graphs (identity removal, ReLU fusion), which is bit-exact.
    """
    if not isinstance(qat_model, QATModel):
        raise QATError(f"export_qat needs the model returned by train_qat/prepare_qat, "
                       f"got {type(qat_model).__name__}")
    settings = qat_model.settings
    if width != settings.width:
        raise QATError(f"{settings.model_name}: exporting at width {width} a model trained for "
                       f"width {settings.width}")
    with eval_mode(qat_model):  # freezes the formats
        graph = from_torch(qat_model.float_model, input_shape, name=settings.model_name)
    quant_rounding = settings.quant_rounding
    formats: dict[str, QFormat] = {}
    for node in graph.nodes:
        if node.name in qat_model.quantizers:
            formats[node.name] = qat_model.output_quantizer(node.name).format
        elif ops.of(node).keeps_input_format:
            formats[node.name] = formats[node.inputs[0]]
        else:
            raise QATError(f"{settings.model_name}: {node.describe()} has no QAT format "
                           f"(operator not supported by QAT)")
        node.formats = {"output": formats[node.name]}
        if node.op in ("Conv1D", "Conv2D", "Dense"):
            layer = qat_model.network.get_submodule(qat_model.quantizers[node.name])
            for key, q in (("kernel", layer.kernel_q), ("bias", layer.bias_q)):
                node.formats[key] = q.format
                values = quantize_array(node.weights[key], q.format, quant_rounding)
                node.weights[key] = values.astype(np.int32)
    graph.precision = f"int{width}"
    graph.rounding = settings.rounding
    graph.quant_rounding = quant_rounding
    graph.metadata["quantization"] = {"method": "qat", "width": width, "granularity": settings.granularity,
                                      "rounding": settings.rounding, "quant_rounding": quant_rounding}
    try:
        return simplify(graph)  # bit-exact rewiring (ReLU fusion...), as PTQ graphs get
    except GraphError as e:  # pragma: no cover - from_torch validated the structure already
        raise QATError(f"{settings.model_name}: exported graph is invalid: {e}") from e
