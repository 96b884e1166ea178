"""``convert()``: graph IR -> self-contained C99 library (number.h, model.h, model.c) + report."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codegen.ctext import CTYPE_BYTES, arena_ctype, tensor_ctype
from codegen.errors import CodegenError
from codegen.lowering import KERNEL_SETS, Layer, Lowered, lower
from codegen.memory import Buffer, Placement, lower_bound, plan, pool_allocation
from codegen.outdir import write_outdir
from codegen.render import ENV, render
from microai import ops
from microai.graph import Graph, GraphError
from microai.graph.passes import simplify

LAYOUTS = ("channels_last",)
REPORT_NAME = "codegen_report.json"
#: Buffers start on 4-byte boundaries so that word-wide (SIMD) loads are aligned.
ALIGNMENT = 4
#: sizeof(scratch_t) of the arena's scratch view (kernels.h): int16 for integer graphs, float for float32.
SCRATCH_BYTES = {True: 2, False: 4}


@dataclass
class CodegenResult:
    """What was generated; also written to ``codegen_report.json`` in the output folder."""

    outdir: str
    files: list[str]
    precision: str
    layout: str
    kernels: str
    input_shape: list[int]
    output_shape: list[int]
    output_layout_shape: list[int]  # logical shape whose channels-last order the output follows
    input_ctype: str  # C types of the input and output buffers (model_input_t, model_output_t)
    output_ctype: str
    input_size: int
    output_size: int
    params: int
    macs: int
    layers: list[dict[str, Any]]
    activation_bytes_pools: int
    activation_bytes_planned: int
    activation_bytes_lower_bound: int
    arena_method: str


def convert(graph: Graph, outdir: Path, *, layout: str = "channels_last",
            kernels: str = "optimized", force: bool = False) -> CodegenResult:
    """Simplify ``graph``, lower it and write the C library to ``outdir`` (see ``codegen.outdir``).

    ``kernels`` selects the C of every layer: ``"reference"`` (one plain loop nest per operator,
    what it computes) or ``"optimized"`` (register-blocked, SIMD, weights pre-arranged); both
    reproduce the reference executor bit for bit. Raises CodegenError naming the layer for
    anything the C cannot compute exactly; on error ``outdir`` is left as it was. A non-empty
    ``outdir`` that is not a previous codegen output is refused unless ``force`` (then the
    generated files are added to it; nothing else is touched).
    """
    if layout not in LAYOUTS:
        raise CodegenError(f"layout '{layout}' not supported; choose one of {LAYOUTS}")
    if kernels not in KERNEL_SETS:
        raise CodegenError(f"kernels '{kernels}' not supported; choose one of {KERNEL_SETS}")
    outdir = Path(outdir)
    g = prepare(graph)
    lowered = lower(g, kernels)
    if narrowed := block_bands(g, lowered):
        lowered = lower(g, kernels, narrowed)
    buffers = _buffers(g, lowered)
    pools, planned = pool_allocation(buffers), plan(buffers)
    sizeof = CTYPE_BYTES[arena_ctype(g)]
    out_node = g.node(g.output)
    result = CodegenResult(
        outdir=str(outdir),
        files=["number.h", *(["kernels.h"] if kernels == "optimized" else []), "model.h", "model.c",
               REPORT_NAME],
        precision=g.precision,
        layout=layout,
        kernels=kernels,
        input_shape=list(g.input.shape),
        output_shape=list(out_node.shape),
        output_layout_shape=list(lowered.layout[g.output]),
        input_ctype=tensor_ctype(g, g.input),
        output_ctype=tensor_ctype(g, out_node),
        input_size=math.prod(g.input.shape),
        output_size=math.prod(out_node.shape),
        params=g.param_count(),
        macs=g.macs(),
        layers=[_layer_summary(g, layer, planned, kernels) for layer in lowered.layers],
        activation_bytes_pools=pools.size,
        activation_bytes_planned=planned.size,
        activation_bytes_lower_bound=lower_bound(buffers),
        arena_method=planned.method,
    )
    texts = _render_all(g, lowered, planned, sizeof, result)
    texts[REPORT_NAME] = json.dumps(asdict(result), indent=1) + "\n"
    write_outdir(outdir, texts, REPORT_NAME, force)
    return result


def prepare(graph: Graph) -> Graph:
    """The graph the C implements: validated, then simplified by microai.graph.passes."""
    try:
        g = graph.copy()
        g.validate()
        return simplify(g)
    except GraphError as e:
        raise CodegenError(f"graph cannot be prepared for code generation: {e}") from e


def kernel_set(layer: Layer, kernels: str) -> str:
    """The kernel set whose template computes ``layer``: the one asked for, or ``reference`` when the
    optimized set has no kernel for it or the lowering chose the reference one (the report's
    ``layers[].kernels`` and ``layers[].fallback``, and the layer's comment, say so)."""
    if layer.fallback is None and f"{kernels}/{layer.template}" not in ENV.list_templates():
        layer.fallback = f"the {kernels} set has no {layer.template}"
    return "reference" if layer.fallback else kernels


def load_report(outdir: Path) -> dict[str, Any]:
    """The ``codegen_report.json`` of a generated folder."""
    path = Path(outdir) / REPORT_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CodegenError(f"{path}: not a generated C folder ({e})") from e


def block_bands(g: Graph, lowered: Lowered) -> set[str]:
    """The int8 band convolutions whose band of a whole output row does not fit beside the activations live
    during the layer in the arena they need anyway: these hold one block's band instead
    (:func:`microai.ops.conv.band_layout`), so the optimized kernels need little RAM beyond the activations.
    """
    activations = _buffers(g, lowered, scratch=False)
    arena = plan(activations).size

    def room(step: int) -> int:
        return arena - sum(b.size for b in activations if b.start <= step <= b.end)

    return {layer.node.name for step, layer in enumerate(lowered.layers)
            if layer.params.get("inner") == "positions" and _aligned(layer.scratch_bytes) > room(step)}


def _buffers(g: Graph, lowered: Lowered, scratch: bool = True) -> list[Buffer]:
    """Arena buffers: every layer output except the graph output (the caller owns input and output), and
    the layers' scratch memory (unless not ``scratch``)."""
    last_read: dict[str, int] = {}
    for step, layer in enumerate(lowered.layers):
        for owner in layer.inputs:
            last_read[owner] = step
    out_owner = lowered.owner[g.output]
    buffers = []
    for step, layer in enumerate(lowered.layers):
        name = layer.node.name
        if name == out_owner:
            continue
        sizeof = CTYPE_BYTES[tensor_ctype(g, layer.node)]
        buffers.append(Buffer(name, _aligned(math.prod(layer.node.shape) * sizeof), step,
                              last_read.get(name, step)))
    for step, layer in enumerate(lowered.layers):
        if scratch and layer.scratch_bytes:
            buffers.append(Buffer(_scratch(layer), _aligned(layer.scratch_bytes), step, step))
    return buffers


def _aligned(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


def _scratch(layer: Layer) -> str:
    """Arena buffer name of a layer's scratch memory (node names cannot contain a space)."""
    return f"{layer.node.name} scratch"


def _layer_summary(g: Graph, layer: Layer, placement: Placement, kernels: str) -> dict[str, Any]:
    node = layer.node
    summary = {"function": layer.function, "node": node.name, "op": node.op, "output_shape": list(node.shape),
               "macs": ops.of(node).macs(node), "arena_offset": placement.offsets.get(node.name),
               "kernels": kernel_set(layer, kernels)}
    if layer.fallback and kernels != "reference":
        summary["fallback"] = layer.fallback
    if g.is_quantized:
        summary["formats"] = {k: str(f) for k, f in node.formats.items()}
    return summary


def _describe(g: Graph, layer: Layer) -> str:
    node = layer.node
    ins = ", ".join(f"{i} {tuple(g.node(i).shape)}" for i in node.inputs)
    act = " + ReLU" if node.attrs.get("activation") == "relu" else ""
    fmt = f" [{', '.join(f'{k} {f}' for k, f in node.formats.items())}]" if g.is_quantized else ""
    return f"{node.op}{act} '{node.name}': {ins} -> {tuple(node.shape)}{fmt}"


def _render_all(g: Graph, lowered: Lowered, placement: Placement, sizeof: int,
                result: CodegenResult) -> dict[str, str]:
    integer = g.is_quantized
    out_owner = lowered.owner[g.output]

    def buffer(owner: str) -> str:
        if owner == g.input.name:
            return "input"
        if owner == out_owner:
            return "output"
        pointer = f"arena.values + {placement.offsets[owner] // sizeof}"
        ctype = tensor_ctype(g, g.node(owner))
        return pointer if ctype == arena_ctype(g) else f"({ctype} *)({pointer})"

    scheme = g.scheme if integer else "float"
    common: dict[str, Any] = {"name": g.metadata.get("name", g.output), "precision": g.precision,
                              "integer": integer, "ctype": arena_ctype(g), "scheme": scheme}
    fixed: dict[str, Any] = {}
    if scheme == "tflite":
        fixed = _tflite_context(g, result)
    elif integer:
        fmt = g.input.formats["output"]
        fixed = {"width": g.width, "min_int": fmt.min_int,
                 "max_int": fmt.max_int, "rounding": g.rounding, "quant_rounding": g.quant_rounding,
                 "input_frac": fmt.frac, "output_frac": g.node(g.output).formats["output"].frac}
    layers, calls, helpers = [], [], []
    for layer, summary in zip(lowered.layers, result.layers, strict=True):
        code = render(f"{summary['kernels']}/{layer.template}", **{**common, **fixed, **layer.params},
                      function=layer.function)
        summary_text = _describe(g, layer)
        if summary["kernels"] != result.kernels:
            summary_text += f"; reference kernel: {layer.fallback}"
        layers.append({"summary": summary_text, "arrays": layer.arrays, "code": code.rstrip("\n")})
        args = [buffer(owner) for owner in layer.inputs] + [buffer(layer.node.name)]
        if layer.scratch_bytes:
            args.append(f"arena.scratch + {placement.offsets[_scratch(layer)] // SCRATCH_BYTES[integer]}")
        calls.append(f"{layer.function}({', '.join(args)})")
        helpers += [h for h in layer.helpers if h not in helpers]
    texts = {
        "number.h": render("number.h.j2", **common, **fixed),
        "model.h": render(
            "model.h.j2", **common, **fixed, input_shape=result.input_shape, output_shape=result.output_shape,
            input_layout=_layout_text(result.input_shape, result.input_shape),
            output_layout=_layout_text(result.output_shape, result.output_layout_shape),
            input_size=result.input_size, output_size=result.output_size, arena_bytes=placement.size),
        "model.c": render("model.c.j2", **common, layers=layers, calls=calls, macs=result.macs,
                          kernels=result.kernels, arena_elements=placement.size // sizeof,
                          scratch_elements=placement.size // SCRATCH_BYTES[integer],
                          arena_method=placement.method),
    }
    if result.kernels == "optimized":
        texts["kernels.h"] = render("optimized/kernels.h.j2", **common, **fixed,
                                    helpers=[render(h.template, **common, **fixed, **dict(h.params))
                                             for h in helpers])
    return texts


def _tflite_context(g: Graph, result: CodegenResult) -> dict[str, Any]:
    """number.h / model.h parameters of a tflite-scheme graph: buffer types, input and output quantization,
    which helpers the layers need (64-bit requantization, the softmax's fixed point)."""
    fin, fout = g.input.formats["output"], g.node(g.output).formats["output"]
    wide = any(g.node(n.inputs[0]).formats["output"].width == 16 for n in g.nodes if "kernel" in n.weights)
    return {"input_ctype": result.input_ctype, "output_ctype": result.output_ctype, "wide": wide,
            "softmax": any(n.op == "Softmax" for n in g.nodes), "width": 8,
            "input_scale": fin.scale[0], "input_zero_point": fin.zero_point[0],
            "output_scale": fout.scale[0], "output_zero_point": fout.zero_point[0]}


def _layout_text(shape: list[int], layout_shape: list[int]) -> str:
    """Human description of a buffer's memory order, e.g. ``[128][9] (samples, channels)``."""
    if len(layout_shape) == 1:
        return f"[{layout_shape[0]}]"
    dims = "".join(f"[{d}]" for d in (*layout_shape[1:], layout_shape[0]))
    flat = " flattened" if list(shape) != list(layout_shape) else ""
    names = "(samples, channels)" if len(layout_shape) == 2 else "(rows, columns, channels)"
    return f"{dims} {names}{flat}"
