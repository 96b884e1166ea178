"""Quantization-aware training in TFLite's scheme: fine-tune a float graph under TFLite's fake quantization.

The float graph IR (BatchNorm folded, ReLUs fused: what the quantizer will see) runs as a torch module
(:class:`GraphModule`) whose multiply-accumulate weights are fake-quantized per output channel (symmetric
int8, ``max|w| / 127``) and whose activations are fake-quantized where the tflite scheme stores a new
format (network input, Conv/Dense/Add/Mean outputs; operators that move values keep their input's), with
the scale and zero point :func:`microai.quant.affine.activation_format` gives the tensor's range. Ranges
start from a calibration pass over training inputs and follow an exponential moving average of each
batch's min/max while training (as TensorFlow's QAT does); gradients pass straight through the rounding
inside the range. ``export`` writes the fine-tuned float weights back into the graph and quantizes it with
the learned ranges (:func:`microai.quant.affine.quantize_tflite`), so the integer graph is what the
fake-quantized model computed, up to the integer requantization's rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microai import ops
from microai.graph.ir import Graph, GraphError, Node
from microai.quant.affine import Range, activation_format, calibrate_ranges, quantize_tflite, tflite_graph
from microai.train import TrainConfig, train

MOMENTUM = 0.9


class RangeObserver(nn.Module):
    """The (min, max) of one activation: calibrated, then a moving average of the training batches'."""

    def __init__(self, lo: float, hi: float, width: int) -> None:
        super().__init__()
        self.width = width
        self.register_buffer("range", torch.tensor([lo, hi], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                batch = torch.stack([x.min(), x.max()]).double()
                self.range.mul_(MOMENTUM).add_(batch, alpha=1 - MOMENTUM)
        fmt = activation_format(*self.range.tolist(), self.width)
        lo, hi = (-128, 127) if self.width == 8 else (-32768, 32767)
        return torch.fake_quantize_per_tensor_affine(x, fmt.scale[0], fmt.zero_point[0], lo, hi)

    def merge_shard_buffers(self, shards: list[dict[str, torch.Tensor]]) -> None:
        """Data-parallel shards (microai.train.parallel): the widest range any shard saw."""
        ranges = torch.stack([s["range"] for s in shards])
        self.range.copy_(torch.stack([ranges[:, 0].min(), ranges[:, 1].max()]))


def fake_quantized_kernel(w: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 per output channel (narrow range), as :func:`microai.quant.affine.weight_format`."""
    peak = w.detach().abs().reshape(len(w), -1).max(dim=1).values
    scale = torch.where(peak > 0, peak / 127, torch.ones_like(peak)).float()
    zero = torch.zeros(len(w), dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)


class GraphModule(nn.Module):
    """A float graph IR as a torch module (channels first, batch first), fake-quantized as the tflite
    scheme computes."""

    def __init__(self, graph: Graph, ranges: dict[str, Range], activations: int = 8,
                 int16_layers: Sequence[str] = ()) -> None:
        super().__init__()
        self.graph = graph
        self.weights = nn.ParameterDict()
        self.observers = nn.ModuleDict()
        for n in graph.nodes:
            for key, w in n.weights.items():
                values = torch.from_numpy(np.asarray(w, dtype=np.float32).copy())
                self.weights[_key(n, key)] = nn.Parameter(values)
            if n.op == "Input" or not (ops.of(n).keeps_input_format or n.op == "Softmax"):
                width = 16 if activations == 16 or n.name in int16_layers else 8
                self.observers[_key(n, "output")] = RangeObserver(*ranges[n.name], width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for n in self.graph.nodes:
            out = x if n.op == "Input" else _run(n, [values[i] for i in n.inputs], self._weight(n))
            act = n.attrs.get("activation")
            if act in ("relu", "relu6"):
                out = F.relu(out) if act == "relu" else F.relu6(out)
            observer = self.observers[_key(n, "output")] if _key(n, "output") in self.observers else None
            values[n.name] = observer(out) if observer is not None else out
        return values[self.graph.output]

    def _weight(self, n: Node) -> dict[str, torch.Tensor]:
        w = {key: self.weights[_key(n, key)] for key in n.weights}
        if "kernel" in w:
            w["kernel"] = fake_quantized_kernel(w["kernel"])
        return w

    def ranges(self) -> dict[str, Range]:
        """Each quantized activation's learned (min, max)."""
        return {n.name: tuple(self.observers[_key(n, "output")].range.tolist()) for n in self.graph.nodes
                if _key(n, "output") in self.observers}

    def float_graph(self) -> Graph:
        """The graph with the fine-tuned float weights."""
        g = self.graph.copy()
        for n in g.nodes:
            n.weights = {k: self.weights[_key(n, k)].detach().numpy().astype(np.float32).copy()
                         for k in n.weights}
        return g


def train_qat_tflite(graph: Graph, x_train: np.ndarray, y_train: np.ndarray, cfg: TrainConfig, seed: int,
                     activations: int = 8, int16_layers: Sequence[str] = (), calibration_samples: int = 1000,
                     progress: bool = True) -> tuple[Graph, dict]:
    """Fine-tune the float ``graph`` under TFLite's fake quantization; the quantized graph and the history."""
    if graph.is_quantized:
        raise GraphError(f"QAT needs a float32 graph, got {graph.precision}")
    g = tflite_graph(graph)
    from microai.tflite.convert import representative_samples

    calibration = representative_samples(np.asarray(x_train, dtype=np.float32), calibration_samples)
    net = GraphModule(g, calibrate_ranges(g, calibration), activations, tuple(int16_layers))
    torch.manual_seed(seed)
    history = train(net, x_train, y_train, cfg, seed, progress=progress)
    net.eval()
    quantized = quantize_tflite(net.float_graph(), activations=activations, int16_layers=int16_layers,
                                ranges=net.ranges())
    quantized.metadata["quantization"].update(method="qat", calibration_samples=len(calibration))
    return quantized, history


def _key(node: Node, what: str) -> str:
    """A ParameterDict/ModuleDict key for a node's tensor (no dots allowed)."""
    return f"{node.name}:{what}".replace(".", "_")


def _run(n: Node, ins: list[torch.Tensor], w: dict[str, torch.Tensor]) -> torch.Tensor:
    """Float semantics of one operator in torch (the same as its ``run_float`` in :mod:`microai.ops`)."""
    op = ops.of(n)
    x = ins[0] if ins else None
    if n.op in ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D"):
        conv = F.conv1d if op.dims == 1 else F.conv2d
        groups = x.shape[1] if n.op.startswith("Depthwise") else 1
        return conv(_pad(x, op.padding(n)), w["kernel"], w["bias"], stride=op.stride(n), groups=groups)
    if n.op == "Dense":
        return F.linear(x, w["kernel"], w["bias"])
    if n.op in ("MaxPool1D", "MaxPool2D"):
        pool = F.max_pool1d if op.dims == 1 else F.max_pool2d
        return pool(_pad(x, op.padding(n), -math.inf), op.pool_size(n), op.stride(n))
    if n.op in ("AvgPool1D", "AvgPool2D"):
        pool = F.avg_pool1d if op.dims == 1 else F.avg_pool2d
        size, stride, pad = op.pool_size(n), op.stride(n), op.padding(n)
        counts = pool(_pad(torch.ones_like(x[:1, :1]), pad), size, stride)  # taps inside the input
        return pool(_pad(x, pad), size, stride) / counts
    if n.op == "Add":
        return sum(ins[1:], ins[0])
    if n.op == "ReLU":
        return F.relu(x)
    if n.op in ("ZeroPadding1D", "ZeroPadding2D"):
        return _pad(x, op.padding(n))
    if n.op == "Flatten":
        return x.reshape(len(x), -1)
    if n.op == "Identity":
        return x
    if n.op == "Mean":
        return x.reshape(len(x), x.shape[1], -1).mean(dim=-1)
    if n.op == "Softmax":
        return F.softmax(x * n.attrs.get("beta", 1.0), dim=1)
    raise GraphError(f"{n.describe()}: not supported by quantization-aware training in the tflite scheme")


def _pad(x: torch.Tensor, padding: list[int], value: float = 0.0) -> torch.Tensor:
    """[before, after] per spatial axis (IR order) -> F.pad's last-axis-first order."""
    if not any(padding):
        return x
    pairs = [padding[i:i + 2] for i in range(0, len(padding), 2)]
    return F.pad(x, [p for pair in reversed(pairs) for p in pair], value=value)
