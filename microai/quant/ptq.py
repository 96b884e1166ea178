"""Post-training quantization with the paper's power-of-two formats (no retraining).

Activation ranges are calibrated by running the float graph on (training) data with the
reference executor; weight ranges come from the weights. ``granularity="network"`` gives every
tensor one number of fractional bits (the paper's int16 is Q7.9: ``width=16, fixed_frac=9``);
``granularity="layer"`` gives every tensor its own. The result stores integer weights (int32
arrays) and every node's formats, as specified in docs/arithmetic.md.

A layer's worst-case int32 accumulator (``reference.accumulator_bound``, the check codegen makes)
can overflow: with per-layer formats a fine input and weight resolution pushes the aligned bias or
the sum out of range; with one network-wide format (the paper's Q7.9) a layer with many large
weights does. PTQ then drops fractional bits of that layer's weights until the bound fits, so that
every graph it returns can be generated, and records how many per layer in
``metadata["quantization"]["weight_bits_dropped_for_int32_accumulator"]`` (at network granularity
that layer's weights then leave the uniform format).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microai import ops
from microai.graph.ir import Graph, GraphError, Node, QFormat
from microai.graph.passes import simplify
from microai.quant import reference
from microai.quant.formats import check_width, frac_bits_for, quantize_array

GRANULARITIES = ("network", "layer")
SHIFT_ROUNDINGS = ("floor", "nearest")
QUANT_ROUNDINGS = ("trunc", "nearest")


def calibrate(graph: Graph, x: np.ndarray, batch_size: int = reference.DEFAULT_BATCH) -> dict[str, float]:
    """max|value| of every node's output over the inputs ``x`` (float graph, batch first)."""
    if graph.is_quantized:
        raise GraphError(f"calibration needs a float32 graph, got {graph.precision}")
    if len(x) == 0:
        raise GraphError("calibration set is empty")
    ranges = {n.name: 0.0 for n in graph.nodes}
    for i in range(0, len(x), batch_size):
        for name, v in reference.run_all(graph, x[i:i + batch_size]).items():
            if not np.all(np.isfinite(v)):
                raise GraphError(f"{graph.node(name).describe()}: non-finite activations during calibration")
            ranges[name] = max(ranges[name], float(np.max(np.abs(v))) if v.size else 0.0)
    return ranges


def quantize_ptq(graph: Graph, calibration_x: np.ndarray, width: int, granularity: str = "network",
                 fixed_frac: int | None = None, rounding: str = "nearest",
                 quant_rounding: str = "nearest") -> Graph:
    """Quantized copy of the float ``graph`` (simplified first: BatchNorm folded, ReLUs fused).

    ``fixed_frac`` (network granularity only) imposes the fractional bits of every tensor;
    otherwise they follow from the largest magnitude (of the network, or of each tensor).
    ``rounding`` is the shift rounding and ``quant_rounding`` the float->fixed conversion: round to
    nearest by default (on deep models floor/truncation compounds a bias layer after layer); the
    paper's ``"floor"`` / ``"trunc"`` stay available (config/paper.yaml uses them).
    """
    width = check_width(width)
    _check_choice("granularity", granularity, GRANULARITIES)
    _check_choice("rounding", rounding, SHIFT_ROUNDINGS)
    _check_choice("quant_rounding", quant_rounding, QUANT_ROUNDINGS)
    if fixed_frac is not None and granularity != "network":
        raise ValueError(f"fixed_frac={fixed_frac} needs granularity 'network', got '{granularity}'")
    if graph.is_quantized:
        raise GraphError(f"graph is already quantized ({graph.precision}); PTQ needs a float32 graph")
    g = simplify(graph)
    activations = calibrate(g, np.asarray(calibration_x, dtype=np.float32))
    frac_of = _frac_chooser(g, activations, width, granularity, fixed_frac)

    g.precision = f"int{width}"
    g.rounding = rounding
    g.quant_rounding = quant_rounding
    float_weights = {n.name: dict(n.weights) for n in g.nodes}
    coarsened: dict[str, int] = {}
    for n in g.nodes:
        for coarsen in range(2 * width + 1):  # 2w bits less make every w-bit weight 0: the bias alone fits
            n.formats = _formats(g, n, frac_of, width, coarsen)
            n.weights = {key: quantize_array(w, n.formats[key], quant_rounding).astype(np.int32)
                         for key, w in float_weights[n.name].items()}
            bound = reference.accumulator_bound(g, n)
            if bound <= reference.LONG_MAX or not n.weights:
                break
        if bound > reference.LONG_MAX:  # no weights to give up bits (Add of operands far apart in range)
            raise GraphError(f"{n.describe()}: worst-case accumulator {bound} exceeds int32 with the formats "
                             f"PTQ chose ({', '.join(f'{k} {f}' for k, f in n.formats.items())}); "
                             f"try granularity 'network' or a smaller width")
        if coarsen:
            coarsened[n.name] = coarsen
    g.metadata["quantization"] = {
        "method": "ptq",
        "granularity": granularity,
        "width": width,
        "fixed_frac": fixed_frac,
        "calibration_samples": len(calibration_x),
        "weight_bits_dropped_for_int32_accumulator": coarsened,
    }
    g.validate()
    return g


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got '{value}'")


def _frac_chooser(g: Graph, activations: dict[str, float], width: int, granularity: str,
                  fixed_frac: int | None) -> Callable[[Node, str], int]:
    """Function (node, tensor key) -> fractional bits; ``"output"`` is the node's activation.

    Ranges are taken now, from the float weights, before any node is converted.
    """
    ranges = {(n.name, "output"): activations[n.name] for n in g.nodes}
    ranges.update({(n.name, k): float(np.max(np.abs(w))) if w.size else 0.0
                   for n in g.nodes for k, w in n.weights.items()})
    if granularity == "layer":
        return lambda node, key: frac_bits_for(ranges[(node.name, key)], width)
    if fixed_frac is None:
        fixed_frac = frac_bits_for(max(ranges.values()), width)
    return lambda node, key: fixed_frac


def _formats(g: Graph, n: Node, frac_of: Callable[[Node, str], int], width: int,
             coarsen: int = 0) -> dict[str, QFormat]:
    """Formats of node ``n`` by its operator's rule; ``coarsen`` drops that many fractional bits of its
    kernel/scale so the worst-case int32 accumulator fits."""
    if ops.of(n).keeps_input_format:
        return {"output": g.node(n.inputs[0]).formats["output"]}
    return ops.integer(g, n).formats(g, n, frac_of, width, coarsen)
