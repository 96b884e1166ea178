"""What every operator module provides: the :class:`Operator` base class and the attribute helpers.

An operator's facts are class attributes (weights, ReLU fusion, format keeping, buffer aliasing)
and methods (attribute normalisation, shape rule, float reference, lowering to C). Its integer
semantics live in ``integer``, one object per quantization scheme (see :mod:`microai.ops.pow2`),
because the same operator computes differently under another scheme (zero points, per-channel
multipliers) while its shape, float meaning and geometry stay the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from microai.graph.ir import Graph, GraphError, Node, QFormat

if TYPE_CHECKING:  # codegen passes its context in; microai.ops never imports codegen
    from codegen.lowering import Layer, LoweringContext

Shape = tuple[int, ...]
#: ``frac_of(node, tensor key)``: fractional bits a quantizer chose for a tensor (``"output"`` or a weight).
FracChooser = Callable[[Node, str], int]


def as_list(value: int | Sequence[int], count: int) -> list[int]:
    """An attribute given as one int (repeated ``count`` times) or as a sequence, as a list of ints."""
    return [int(value)] * count if isinstance(value, int) else [int(v) for v in value]


def spatial(node: Node, key: str, count: int, default: int | Sequence[int] | None = None) -> list[int]:
    """``node.attrs[key]`` (or ``default``) normalised by :func:`as_list`; a missing attribute without
    default is an error naming the node."""
    value = node.attrs.get(key, default)
    if value is None:
        raise GraphError(f"{node.describe()}: attribute '{key}' is required")
    values = as_list(value, count)
    if len(values) != count:
        raise GraphError(f"{node.describe()}: attribute '{key}' needs {count} values, got {values}")
    return values


def single(ins: list[Any], node: Node) -> Any:
    """The only input of a one-input operator."""
    if len(ins) != 1:
        raise GraphError(f"{node.describe()}: takes one input, got {len(ins)}")
    return ins[0]


def per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcast a (C,) parameter over (N, C, *spatial)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class IntegerSemantics:
    """One operator's integer arithmetic under one quantization scheme.

    ``run`` is what the reference executor computes (and the generated C must reproduce);
    ``accumulator_bound`` the worst-case magnitude of its int32 intermediates (0: none), checked by
    the quantizers and codegen; ``formats`` the quantizer's rule for the formats of its tensors.
    ``applies_activation``: ``run`` computes a fused activation itself (the tflite scheme clamps its
    output); otherwise the executor applies ``max(out, 0)`` after it.
    """

    applies_activation: ClassVar[bool] = False

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        raise GraphError(f"{node.describe()}: no integer implementation")

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        return 0

    def formats(self, graph: Graph, node: Node, frac_of: FracChooser, width: int,
                coarsen: int = 0) -> dict[str, QFormat]:
        """Formats of ``node``'s output and weights chosen from ``frac_of``; ``coarsen`` is how many
        fractional bits its weights give up so that its accumulator fits (operators with one)."""
        return {key: QFormat(width, frac_of(node, key)) for key in ("output", *node.weights)}


class Operator:
    """The facts of one operator. Subclasses set the class attributes and override what applies."""

    name: str = ""
    #: Weight tensors a node of this operator carries.
    weights: ClassVar[tuple[str, ...]] = ()
    #: Spatial dimensions (1 or 2) for operators that come in 1D and 2D forms, else None.
    dims: int | None = None
    #: A following ReLU may be fused in (``attrs["activation"] = "relu"``, applied after saturation).
    relu_fusable: ClassVar[bool] = False
    #: The output keeps the input's number format (quantizers record it so; codegen checks it).
    keeps_input_format: ClassVar[bool] = False
    #: The generated C computes nothing: the output is the input's buffer.
    alias: ClassVar[bool] = False
    #: A per-channel Scale right after it folds into its kernel and bias (passes.fold_scale_into_conv).
    folds_scale: ClassVar[bool] = False
    #: A ZeroPadding of the same dimensions right before it folds into its ``padding`` attribute.
    absorbs_padding: ClassVar[bool] = False
    #: Integer semantics per quantization scheme (:data:`microai.ops.pow2.POW2`, ...).
    integer: Mapping[str, IntegerSemantics] = {}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        """Output shape from the input shapes; raise GraphError naming the node on mismatch."""
        raise GraphError(f"{node.describe()}: no shape rule")

    def macs(self, node: Node) -> int:
        """Multiply-accumulates per inference (the paper counts Conv and Dense only)."""
        return 0

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        """float32 reference: ``ins`` are batch-first float32 arrays."""
        raise GraphError(f"{node.describe()}: no float implementation")

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        """The C layer computing ``node``: template name, its parameters and constant arrays."""
        raise ctx.error(f"{node.describe()}: operator not supported by the C generator")

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        """:meth:`lower` for a graph of the tflite scheme (TFLite's arithmetic, its own templates)."""
        raise ctx.error(f"{node.describe()}: operator not supported by the C generator in the tflite scheme")

    @property
    def lowers_to_c(self) -> bool:
        """True when the operator has a C template of its own in some scheme (aliases and Input need none)."""
        return type(self).lower is not Operator.lower or type(self).lower_tflite is not Operator.lower_tflite
