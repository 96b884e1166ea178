"""Quantization into TFLite's scheme (``tflite``), calibrated like TFLite's converter: MicroAI's own PTQ.

Activations: the min/max of each tensor over the calibration inputs (the float graph run by the
reference executor, ReLUs fused as the converter fuses them), widened to contain 0, give an int8 scale
``(max - min) / 255`` and a zero point nudged to an integer as TensorFlow's quantizer does; int16
activations (TFLite's 16x8, per network or for chosen layers) are symmetric, ``max|x| / 32767``.
Operators that move values (pools, padding, flatten, ReLU) keep their input's format, as the
converter's same-scale constraint does; an int8 softmax gets TFLite's fixed 1/256, zero point -128.
Weights: symmetric int8 per output channel, ``max|w| / 127`` (narrow range [-127, 127]); biases int32
(int64 under int16 inputs) in the scale ``input scale x weight scale``.

One quirk of TensorFlow's converter is reproduced, so that the same float model gets the same integer
model: its calibrator logs each operator's input and output ranges after the operator ran, and an ADD
computes in place in its first operand's buffer when nothing else reads it, so that operand's logged range
also covers the ADD's output (:func:`converter_ranges`).

``ranges`` replaces the calibration (quantization-aware training exports its learned ranges).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from microai import ops
from microai.graph.ir import AffineFormat, Graph, GraphError, Node
from microai.graph.passes import binary_adds, simplify
from microai.ops.pow2 import LONG_MAX
from microai.ops.softmax import softmax_output_format
from microai.ops.tflite import TFLITE, round_half_away, round_half_away_array
from microai.quant import reference

ACTIVATION_WIDTHS = (8, 16)
#: int8 weights use the narrow range [-127, 127] (symmetric), as TFLite's per-channel quantization.
WEIGHT_MAX = 127
Range = tuple[float, float]


def calibrate_ranges(graph: Graph, x: np.ndarray,
                     batch_size: int = reference.DEFAULT_BATCH) -> dict[str, Range]:
    """(min, max) of every node's output over the inputs ``x`` (float graph, batch first)."""
    if graph.is_quantized:
        raise GraphError(f"calibration needs a float32 graph, got {graph.precision}")
    if len(x) == 0:
        raise GraphError("calibration set is empty")
    ranges: dict[str, Range] = {}
    for i in range(0, len(x), batch_size):
        for name, v in reference.run_all(graph, x[i:i + batch_size]).items():
            if not np.all(np.isfinite(v)):
                raise GraphError(f"{graph.node(name).describe()}: non-finite activations during calibration")
            lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
            old = ranges.get(name, (lo, hi))
            ranges[name] = (min(old[0], lo), max(old[1], hi))
    return ranges


def converter_ranges(graph: Graph, ranges: Mapping[str, Range]) -> dict[str, Range]:
    """The ranges TensorFlow's converter records for ``graph`` (simplified, as quantized) from the true
    ``ranges``: the first operand of an Add that only the Add reads (and that is not the network input) also
    spans the Add's output, which TFLite computes in that operand's buffer before the calibrator reads it."""
    out = dict(ranges)
    for n in graph.nodes:
        first = graph.node(n.inputs[0]) if n.op == "Add" else None
        if first is not None and first.op != "Input" and [c.name for c in graph.consumers(first.name)] == [
                n.name]:
            (lo, hi), (add_lo, add_hi) = out[first.name], ranges[n.name]
            out[first.name] = (min(lo, add_lo), max(hi, add_hi))
    return out


def activation_format(lo: float, hi: float, width: int = 8) -> AffineFormat:
    """The format TensorFlow's quantizer gives a tensor of range [lo, hi] (float32, widened to contain 0):
    int8 asymmetric, scale ``(hi - lo) / 255`` in float32 arithmetic, the zero point nudged to an integer
    from the end that loses less (``GetAsymmetricQuantizationParams``); int16: symmetric, max|x| / 32767."""
    lo, hi = min(np.float32(lo), np.float32(0)), max(np.float32(hi), np.float32(0))
    if width == 16:
        bound = max(-lo, hi)
        return AffineFormat.per_tensor(16, float(bound / np.float32(32767)) if bound > 0 else 1.0, 0)
    if width != 8:
        raise ValueError(f"activation width must be one of {ACTIVATION_WIDTHS}, got {width}")
    if hi == lo:
        return AffineFormat.per_tensor(8, 1.0, 0)
    qmin, qmax = -128.0, 127.0
    scale = float((hi - lo) / np.float32(qmax - qmin))
    lo, hi = float(lo), float(hi)
    from_min, from_max = qmin - lo / scale, qmax - hi / scale
    error_min, error_max = abs(qmin) + abs(lo / scale), abs(qmax) + abs(hi / scale)
    zero_point = from_min if error_min < error_max else from_max
    nudged = qmin if zero_point < qmin else qmax if zero_point > qmax else round_half_away(zero_point)
    return AffineFormat.per_tensor(8, scale, int(nudged))


def weight_format(w: np.ndarray) -> AffineFormat:
    """Symmetric int8, one scale per output channel (axis 0): ``max|w| / 127`` (1 for an all-zero channel)."""
    peak = np.abs(w.reshape(len(w), -1)).max(axis=1) if w.size else np.zeros(len(w))
    scales = np.where(peak > 0, peak / WEIGHT_MAX, 1.0).astype(np.float32)
    return AffineFormat(8, tuple(scales), (0,) * len(scales))


def quantize_tflite(graph: Graph, calibration_x: np.ndarray | None = None, activations: int = 8,
                    int16_layers: Iterable[str] = (), ranges: Mapping[str, Range] | None = None) -> Graph:
    """The float ``graph`` quantized in the tflite scheme (:func:`tflite_graph` first: BatchNorm folded,
    ReLUs fused, Adds of more than two tensors split into chains).

    ``activations``: the width of every activation (8, or 16 for TFLite's 16x8); ``int16_layers``: nodes
    whose output is int16 in an otherwise int8 graph (mixed precision per layer). Ranges come from
    ``ranges`` (node -> (min, max), e.g. learned by QAT) or else from calibrating on ``calibration_x``.
    """
    if graph.is_quantized:
        raise GraphError(f"graph is already quantized ({graph.precision}); quantization needs a float graph")
    if activations not in ACTIVATION_WIDTHS:
        raise ValueError(f"activations must be one of {ACTIVATION_WIDTHS} bits, got {activations}")
    g = tflite_graph(graph)
    wide = set(int16_layers)
    unknown = wide - {n.name for n in g.nodes}
    if unknown:
        raise GraphError(f"int16 layers {sorted(unknown)} are not nodes of the graph (after simplification: "
                         f"{[n.name for n in g.nodes]})")
    if ranges is None:
        if calibration_x is None:
            raise ValueError("quantize_tflite needs calibration inputs or ranges")
        ranges = converter_ranges(g, calibrate_ranges(g, np.asarray(calibration_x, dtype=np.float32)))
    g.precision = "int16x8" if activations == 16 or wide else "int8"
    g.scheme = TFLITE
    for n in g.nodes:
        width = 16 if activations == 16 or n.name in wide else 8
        n.formats = {"output": _output_format(g, n, ranges, width)}
        if "kernel" in n.weights:
            _quantize_weights(g, n)
        elif n.weights:
            raise GraphError(f"{n.describe()}: {n.op} has no integer form in the tflite scheme (TFLite has "
                             f"no such operator; a BatchNorm/Scale that cannot fold into a convolution stays "
                             f"one)")
    g.metadata["quantization"] = {
        "method": "ptq" if calibration_x is not None else "ranges", "scheme": TFLITE,
        "activations": activations, "int16_layers": sorted(wide),
        "calibration_samples": None if calibration_x is None else len(calibration_x),
    }
    g.validate()
    for n in g.nodes:
        bound = reference.accumulator_bound(g, n)
        if bound > LONG_MAX:
            raise GraphError(f"{n.describe()}: worst-case int32 accumulator {bound} exceeds {LONG_MAX}")
    return g


def tflite_graph(graph: Graph) -> Graph:
    """``graph`` as the tflite scheme quantizes it: simplified, with binary Adds only (TFLite's ADD)."""
    return binary_adds(simplify(graph))


def _output_format(g: Graph, n: Node, ranges: Mapping[str, Range], width: int) -> AffineFormat:
    op = ops.of(n)
    if op.keeps_input_format:
        return g.node(n.inputs[0]).formats["output"]
    if n.op == "Softmax":
        return softmax_output_format(width)
    if n.name not in ranges:
        raise GraphError(f"{n.describe()}: no calibrated range")
    return activation_format(*ranges[n.name], width)


def _quantize_weights(g: Graph, n: Node) -> None:
    """int8 per-channel kernel, the bias in ``input scale x kernel scale`` (int32; int16 inputs: int64)."""
    kernel, bias = (n.weights[k].astype(np.float64) for k in ("kernel", "bias"))
    kernel_fmt = weight_format(kernel)
    scales = np.asarray(kernel_fmt.scale, dtype=np.float64).reshape((-1,) + (1,) * (kernel.ndim - 1))
    q_kernel = np.clip(round_half_away_array(kernel / scales), -WEIGHT_MAX, WEIGHT_MAX)
    in_fmt = g.node(n.inputs[0]).formats["output"]
    bias_scales = np.float32(in_fmt.scale[0]) * np.asarray(kernel_fmt.scale, dtype=np.float32)
    bias_width = 32 if in_fmt.width == 8 else 64
    limit = float(1 << (bias_width - 1))
    q_bias = np.clip(round_half_away_array(bias / bias_scales.astype(np.float64)), -limit, limit - 1)
    n.formats["kernel"] = kernel_fmt
    n.formats["bias"] = AffineFormat(bias_width, tuple(bias_scales), (0,) * len(bias_scales))
    n.weights = {"kernel": q_kernel.astype(np.int32),
                 "bias": q_bias.astype(np.int64 if bias_width == 64 else np.int32)}


def param_bytes(graph: Graph) -> int:
    """Bytes of the weights as the generated C stores them: each weight in its own format's width in the
    tflite scheme (int8 kernels, int32/int64 biases); ``number_t`` per parameter otherwise."""
    if graph.is_quantized and graph.scheme == TFLITE:
        return sum(w.size * n.formats[k].width // 8 for n in graph.nodes for k, w in n.weights.items())
    bytes_per = 4 if not graph.is_quantized else (1 if graph.width <= 8 else 2)
    return graph.param_count() * bytes_per
