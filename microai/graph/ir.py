"""The framework-neutral model graph: the spine between training and deployment.

Tensors are channels-first without the batch dimension, as in PyTorch:
``(C, L)`` for 1D signals, ``(C, H, W)`` for images, ``(N,)`` for vectors.
Weights keep PyTorch layouts: Conv1D kernel ``(out, in, k)``, Conv2D kernel
``(out, in, kh, kw)``, Dense kernel ``(out, in)``.

A graph is saved as two files with one stem: ``<stem>.json`` (structure,
attributes, number formats; human readable) and ``<stem>.npz`` (weights).
A quantized graph follows one integer scheme (``Graph.scheme``): the paper's power-of-two
fixed point (``pow2``, :class:`QFormat` per tensor) or TFLite's affine quantization
(``tflite``, :class:`AffineFormat` per tensor: scale, zero point, per output channel for weights).
The integer arithmetic every backend must reproduce is specified in
``docs/arithmetic.md``. What each operator is (weights, attributes, shape rule, semantics) is
defined in :mod:`microai.ops`; this module only knows nodes, formats and files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
#: Integer schemes of a quantized graph: the paper's power-of-two fixed point, TFLite's affine quantization.
SCHEMES = ("pow2", "tflite")

class GraphError(ValueError):
    """A graph that cannot be built, saved, loaded or run; the message names the node."""


class SignedWidth:
    """The integer range of a ``width``-bit signed format."""

    width: int

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1


@dataclass(frozen=True)
class QFormat(SignedWidth):
    """Signed fixed-point format: ``width`` bits, ``frac`` fractional bits (value = int * 2**-frac).

    ``frac`` may exceed ``width - 1`` (values below 0.5) or be negative (large values).
    """

    width: int
    frac: int

    @property
    def integer_bits(self) -> int:
        """Integer bits m of the paper's Qm.n notation (sign bit excluded)."""
        return self.width - self.frac - 1

    def to_json(self) -> dict[str, int]:
        return {"width": self.width, "frac": self.frac}

    @classmethod
    def from_json(cls, d: dict[str, int]) -> QFormat:
        return cls(int(d["width"]), int(d["frac"]))

    def __str__(self) -> str:
        return f"Q{self.integer_bits}.{self.frac}"


@dataclass(frozen=True)
class AffineFormat(SignedWidth):
    """TFLite's affine quantization: ``real = scale * (q - zero_point)`` in ``width``-bit signed integers.

    One ``scale``/``zero_point`` per tensor, or one per output channel (axis 0 of the IR weight layout,
    symmetric: zero points 0) for per-channel weights and their biases. Scales are float32 values (as a
    ``.tflite`` stores them), kept as Python floats so that JSON round-trips them exactly.
    """

    width: int
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(float(np.float32(s)) for s in self.scale))
        object.__setattr__(self, "zero_point", tuple(int(z) for z in self.zero_point))
        if not self.scale or len(self.scale) != len(self.zero_point):
            raise GraphError(f"affine format needs as many zero points as scales (>= 1), got "
                             f"{len(self.scale)} scales and {len(self.zero_point)} zero points")
        if not all(s > 0 and np.isfinite(s) for s in self.scale):
            raise GraphError(f"affine format scales must be finite and > 0, got {self.scale[:4]}...")
        if any(z < self.min_int or z > self.max_int for z in self.zero_point):
            raise GraphError(f"zero points {self.zero_point[:4]} outside the {self.width}-bit range")

    @classmethod
    def per_tensor(cls, width: int, scale: float, zero_point: int = 0) -> AffineFormat:
        return cls(width, (scale,), (zero_point,))

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    def scales(self, channels: int) -> np.ndarray:
        """float32 scale of each of ``channels`` channels (a per-tensor scale is repeated)."""
        if len(self.scale) not in (1, channels):
            raise GraphError(f"{len(self.scale)} scales for {channels} channels")
        return np.broadcast_to(np.asarray(self.scale, dtype=np.float32), (channels,))

    def to_json(self) -> dict[str, Any]:
        return {"width": self.width, "scale": list(self.scale), "zero_point": list(self.zero_point)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AffineFormat:
        return cls(int(d["width"]), tuple(d["scale"]), tuple(d["zero_point"]))

    def __str__(self) -> str:
        if self.per_channel:
            return f"int{self.width} per-channel({len(self.scale)})"
        return f"int{self.width} s={self.scale[0]:.6g} zp={self.zero_point[0]}"


#: The number format of one tensor of a quantized graph.
Format = QFormat | AffineFormat


def format_from_json(d: dict[str, Any]) -> Format:
    """A QFormat or an AffineFormat from its ``to_json()`` dict (affine ones carry a ``scale``)."""
    return AffineFormat.from_json(d) if "scale" in d else QFormat.from_json(d)


@dataclass
class Node:
    """One operator. ``formats`` maps ``"output"`` and weight names to their number format once quantized."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    formats: dict[str, Format] = field(default_factory=dict)

    def describe(self) -> str:
        return f"node '{self.name}' ({self.op})"


@dataclass
class Graph:
    """A DAG of nodes in topological order; ``precision`` is ``float32`` or ``int<w>``
    (``int16x8`` for TFLite's 8-bit weights with 16-bit activations).

    ``scheme`` is the integer arithmetic of a quantized graph (:data:`SCHEMES`). For ``pow2``,
    ``rounding`` (``"floor"`` or ``"nearest"``) applies to every right shift of the integer
    arithmetic and ``quant_rounding`` (``"trunc"`` or ``"nearest"``) to the conversion of float
    weights and inputs to fixed point; the ``tflite`` scheme's rounding is TFLite's own.
    """

    nodes: list[Node]
    output: str
    precision: str = "float32"
    rounding: str = "floor"
    quant_rounding: str = "trunc"
    metadata: dict[str, Any] = field(default_factory=dict)
    scheme: str = "pow2"

    # ------------------------------------------------------------------ access
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise GraphError(f"no node named '{name}'")

    @property
    def input(self) -> Node:
        inputs = [n for n in self.nodes if n.op == "Input"]
        if len(inputs) != 1:
            raise GraphError(f"graph must have exactly one Input node, has {len(inputs)}")
        return inputs[0]

    @property
    def is_quantized(self) -> bool:
        return self.precision != "float32"

    @property
    def width(self) -> int:
        """Integer width of a quantized graph's activations (``int16`` -> 16, ``int16x8`` -> 16)."""
        if not self.is_quantized:
            raise GraphError("float32 graph has no integer width")
        return int(self.precision[3:].split("x")[0])

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def copy(self) -> Graph:
        return Graph(
            nodes=[
                Node(n.name, n.op, list(n.inputs), json.loads(json.dumps(n.attrs)),
                     {k: v.copy() for k, v in n.weights.items()}, tuple(n.shape), dict(n.formats))
                for n in self.nodes
            ],
            output=self.output,
            precision=self.precision,
            rounding=self.rounding,
            quant_rounding=self.quant_rounding,
            metadata=json.loads(json.dumps(self.metadata)),
            scheme=self.scheme,
        )

    # -------------------------------------------------------------- checking
    def validate(self) -> None:
        """Check names, operators, topological order and weights; then infer shapes."""
        from microai import ops  # deferred: the operator modules build on this module's types

        seen: set[str] = set()
        for n in self.nodes:
            op = ops.of(n)
            if n.name in seen:
                raise GraphError(f"{n.describe()}: duplicate node name")
            for i in n.inputs:
                if i not in seen:
                    raise GraphError(f"{n.describe()}: input '{i}' is not defined before it")
            missing = [w for w in op.weights if w not in n.weights]
            if missing:
                raise GraphError(f"{n.describe()}: missing weights {missing}")
            seen.add(n.name)
        if self.output not in seen:
            raise GraphError(f"output '{self.output}' is not a node")
        if self.rounding not in ("floor", "nearest"):
            raise GraphError(f"rounding must be 'floor' or 'nearest', got '{self.rounding}'")
        if self.quant_rounding not in ("trunc", "nearest"):
            raise GraphError(f"quant_rounding must be 'trunc' or 'nearest', got '{self.quant_rounding}'")
        if self.scheme not in SCHEMES:
            raise GraphError(f"scheme must be one of {SCHEMES}, got '{self.scheme}'")
        expected = AffineFormat if self.scheme == "tflite" else QFormat
        for n in self.nodes:
            wrong = [k for k, f in n.formats.items() if not isinstance(f, expected)]
            if wrong:
                raise GraphError(f"{n.describe()}: formats {wrong} are not {expected.__name__}s of the "
                                 f"'{self.scheme}' scheme")
        infer_shapes(self)

    # ------------------------------------------------------------ statistics
    def param_count(self) -> int:
        return int(sum(w.size for n in self.nodes for w in n.weights.values()))

    def macs(self) -> int:
        """Multiply-accumulates per inference of Conv and Dense layers (the paper's count)."""
        from microai import ops

        return sum(ops.of(n).macs(n) for n in self.nodes)

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write ``<stem>.json`` and ``<stem>.npz`` atomically (temp files then rename)."""
        json_path, npz_path = artifact_paths(path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{n.name}/{k}": v for n in self.nodes for k, v in n.weights.items()}
        doc = {
            "format_version": FORMAT_VERSION,
            "precision": self.precision,
            "rounding": self.rounding,
            "quant_rounding": self.quant_rounding,
            "scheme": self.scheme,
            "output": self.output,
            "metadata": self.metadata,
            "nodes": [
                {
                    "name": n.name,
                    "op": n.op,
                    "inputs": n.inputs,
                    "attrs": n.attrs,
                    "shape": list(n.shape),
                    "weights": {k: list(v.shape) for k, v in n.weights.items()},
                    "formats": {k: f.to_json() for k, f in n.formats.items()},
                }
                for n in self.nodes
            ],
        }
        tmp_json = json_path.with_suffix(".json.tmp")
        tmp_npz = npz_path.with_suffix(".tmp.npz")
        try:
            tmp_json.write_text(json.dumps(doc, indent=1) + "\n")
            np.savez(tmp_npz, **arrays)
            tmp_npz.replace(npz_path)
            tmp_json.replace(json_path)
        finally:
            tmp_json.unlink(missing_ok=True)
            tmp_npz.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | Path) -> Graph:
        json_path, npz_path = artifact_paths(path)
        try:
            doc = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise GraphError(f"{json_path}: cannot read graph artifact: {e}") from e
        if doc.get("format_version") != FORMAT_VERSION:
            raise GraphError(
                f"{json_path}: format_version {doc.get('format_version')}, expected {FORMAT_VERSION}"
            )
        try:
            with np.load(npz_path) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as e:
            raise GraphError(f"{npz_path}: cannot read weights: {e}") from e
        nodes = []
        for d in doc["nodes"]:
            weights = {}
            for k, shape in d["weights"].items():
                key = f"{d['name']}/{k}"
                if key not in arrays or list(arrays[key].shape) != shape:
                    raise GraphError(f"{npz_path}: weight '{key}' missing or not of shape {shape}")
                weights[k] = arrays[key]
            nodes.append(Node(d["name"], d["op"], list(d["inputs"]), d["attrs"], weights, tuple(d["shape"]),
                              {k: format_from_json(f) for k, f in d["formats"].items()}))
        g = cls(nodes, doc["output"], doc["precision"], doc["rounding"], doc["quant_rounding"],
                doc["metadata"], doc.get("scheme", "pow2"))
        g.validate()
        return g


def artifact_paths(path: str | Path) -> tuple[Path, Path]:
    """``foo``, ``foo.json`` or ``foo.npz`` -> (``foo.json``, ``foo.npz``)."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".json", ".npz") else p
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


# ---------------------------------------------------------------- shape inference
def infer_shapes(g: Graph) -> None:
    """Compute every node's output shape in place with its operator's shape rule (:mod:`microai.ops`);
    raise GraphError naming the node on mismatch."""
    from microai import ops

    shapes: dict[str, tuple[int, ...]] = {}
    for n in g.nodes:
        shape = ops.of(n).shape(n, [shapes[i] for i in n.inputs])
        n.shape = tuple(int(s) for s in shape)
        shapes[n.name] = n.shape
