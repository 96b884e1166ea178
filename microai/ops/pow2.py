"""The paper's integer scheme: power-of-two scales, symmetric, shifts and saturation (docs/arithmetic.md).

The helpers here are the scheme's arithmetic (every int32 ``long_number_t`` intermediate is
range-checked: an overflow raises :class:`AccumulatorOverflow` naming the layer instead of
wrapping); the classes are the integer semantics shared by several operators: values that pass
unchanged, and the multiply-accumulate layers (Conv, Dense, Scale).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microai.graph.ir import Graph, GraphError, Node, QFormat
from microai.ops.base import FracChooser, IntegerSemantics, per_channel
from microai.quant.formats import saturate

#: The scheme's name in ``Operator.integer``.
POW2 = "pow2"
LONG_MIN = -(1 << 31)
LONG_MAX = (1 << 31) - 1


class AccumulatorOverflow(GraphError):
    """An int32 ``long_number_t`` intermediate left its range; the message names the layer."""


def fmt(node: Node, key: str) -> QFormat:
    try:
        return node.formats[key]
    except KeyError:
        raise GraphError(f"{node.describe()}: no '{key}' number format recorded (not quantized?)") from None


def input_fmt(graph: Graph, node: Node, i: int = 0) -> QFormat:
    return fmt(graph.node(node.inputs[i]), "output")


def shift_right(v: np.ndarray, s: int, rounding: str) -> np.ndarray:
    """docs/arithmetic.md ``shift_right`` for ``s >= 0`` (no range check; see :func:`requant`)."""
    if s < 0:
        raise ValueError(f"shift_right needs s >= 0, got {s}")
    if s == 0:
        return v
    s = min(s, 62)  # the int64 values are far below 2**62, so larger shifts give the same result
    if rounding == "nearest":
        v = v + (1 << (s - 1))
    return v >> s


def check_long(node: Node, v: np.ndarray, what: str) -> np.ndarray:
    if v.size:
        lo, hi = int(v.min()), int(v.max())
        if lo < LONG_MIN or hi > LONG_MAX:
            bad = lo if lo < LONG_MIN else hi
            raise AccumulatorOverflow(f"{node.describe()}: {what} reaches {bad}, outside the int32 "
                                      f"long_number_t range [{LONG_MIN}, {LONG_MAX}]")
    return v


def shift_left(node: Node, v: np.ndarray, s: int, what: str) -> np.ndarray:
    if s >= 32 and np.any(v):
        raise AccumulatorOverflow(f"{node.describe()}: {what} shifted left by {s} bits leaves int32")
    return check_long(node, v << s if s < 32 else v, f"{what} << {s}")


def align(b: np.ndarray, n_b: int, n_acc: int, rounding: str, node: Node | None = None) -> np.ndarray:
    """docs/arithmetic.md ``align(b, n_b -> n_acc)``; range-checked when ``node`` is given."""
    if n_acc >= n_b:
        return shift_left(node, b, n_acc - n_b, "aligned bias") if node is not None else b << (n_acc - n_b)
    return shift_right(b, n_b - n_acc, rounding)


def requant_shift(node: Node, n_acc: int) -> int:
    """``n_acc - n_out``; checked before any data is touched, since it depends on the formats only."""
    s = n_acc - fmt(node, "output").frac
    if abs(s) >= 32:
        raise GraphError(f"{node.describe()}: requantization shift of {s} bits; an int32 long_number_t "
                         f"shift must stay below 32 (input, weight and output formats too far apart)")
    return s


def requant(graph: Graph, node: Node, acc: np.ndarray, s: int) -> np.ndarray:
    """``sat_w(shift_right(acc, s))``, every int32 intermediate checked; ``s`` from :func:`requant_shift`."""
    check_long(node, acc, "accumulator")
    if s < 0:
        acc = shift_left(node, acc, -s, "accumulator")
    elif s > 0:
        if graph.rounding == "nearest":
            check_long(node, acc + (1 << (s - 1)), "accumulator + rounding constant")
        acc = shift_right(acc, s, graph.rounding)
    return saturate(acc, graph.width)


def requant_bound(graph: Graph, node: Node, acc: int, aligned: int, n_acc: int) -> int:
    """Worst case of :func:`requant`'s intermediates for an accumulator bounded by ``acc`` whose
    aligned constant part is bounded by ``aligned``."""
    shift = n_acc - fmt(node, "output").frac
    if shift < 0:
        return max(aligned, acc << -shift)
    return acc + ((1 << (shift - 1)) if graph.rounding == "nearest" and shift > 0 else 0)


def require_input_format(graph: Graph, node: Node) -> None:
    if fmt(node, "output") != input_fmt(graph, node):
        raise GraphError(f"{node.describe()}: output format {fmt(node, 'output')} differs from its "
                         f"input's; {node.op} must keep the input format")


class PassThrough(IntegerSemantics):
    """Integer values pass unchanged (moved, selected or reshaped by ``move``); output format = input's."""

    def __init__(self, move: Callable[[Node, np.ndarray], np.ndarray]) -> None:
        self.move = move

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        require_input_format(graph, node)
        return self.move(node, ins[0])


class Linear(IntegerSemantics):
    """``acc = align(bias) + sum x * w`` in int32, then ``requant`` (Conv, Dense, Scale).

    ``products(node, x, w)`` is the bias-free sum of products as exact int64; ``weight`` names the
    multiplying weight (``kernel`` or ``scale``).
    """

    def __init__(self, weight: str, products: Callable[[Node, np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.weight = weight
        self.products = products

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        n_acc = input_fmt(graph, node).frac + fmt(node, self.weight).frac
        s = requant_shift(node, n_acc)
        y = self.products(node, ins[0], node.weights[self.weight].astype(np.int64))
        bias = node.weights["bias"].astype(np.int64)
        bias = align(bias, fmt(node, "bias").frac, n_acc, graph.rounding, node)
        return requant(graph, node, y + per_channel(bias, y.ndim), s)

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        """Every input may reach ``-2**(w-1)``: bias plus the sum of |weights| times that, per output."""
        full = 1 << (graph.width - 1)
        n_acc = input_fmt(graph, node).frac + fmt(node, self.weight).frac
        w = node.weights[self.weight]
        w = np.abs(w.astype(np.int64).reshape(len(w), -1))
        bias = align(node.weights["bias"].astype(np.int64), fmt(node, "bias").frac, n_acc, graph.rounding)
        acc = int(np.max(np.abs(bias) + w.sum(axis=1) * full))
        return requant_bound(graph, node, acc, int(np.max(np.abs(bias))), n_acc)

    def formats(self, graph: Graph, node: Node, frac_of: FracChooser, width: int,
                coarsen: int = 0) -> dict[str, QFormat]:
        formats = super().formats(graph, node, frac_of, width)
        formats[self.weight] = QFormat(width, formats[self.weight].frac - coarsen)
        # Bits below the accumulator's resolution would be shifted away: cap the bias precision.
        n_acc = input_fmt(graph, node).frac + formats[self.weight].frac
        formats["bias"] = QFormat(width, min(formats["bias"].frac, n_acc))
        return formats
