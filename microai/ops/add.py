"""Add: element-wise sum of two or more tensors of equal shape (residual connections)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import Graph, GraphError, Node
from microai.ops.base import IntegerSemantics, Operator, Shape
from microai.ops.pow2 import POW2, input_fmt, requant, requant_bound, requant_shift, shift_left

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


class _AlignedSum(IntegerSemantics):
    """Operands aligned to the finest input format, summed in int32, then requantized."""

    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        fracs = [input_fmt(graph, node, i).frac for i in range(len(node.inputs))]
        n_acc = max(fracs)
        s = requant_shift(node, n_acc)
        acc = sum(shift_left(node, v, n_acc - f, f"operand '{i}'")
                  for v, f, i in zip(ins, fracs, node.inputs, strict=True))
        return requant(graph, node, acc, s)

    def accumulator_bound(self, graph: Graph, node: Node) -> int:
        full = 1 << (graph.width - 1)
        fracs = [input_fmt(graph, node, i).frac for i in range(len(node.inputs))]
        n_acc = max(fracs)
        acc = sum(full << (n_acc - f) for f in fracs)
        return requant_bound(graph, node, acc, acc, n_acc)


class Add(Operator):
    name = "Add"
    relu_fusable = True
    integer = {POW2: _AlignedSum()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        if len(ins) < 2 or any(s != ins[0] for s in ins):
            raise GraphError(f"{node.describe()}: operands must have equal shapes, got {ins}")
        return ins[0]

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        out = ins[0]
        for other in ins[1:]:
            out = out + other
        return out

    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        layouts = {ctx.layout[i] for i in node.inputs}
        if len(layouts) != 1:
            raise ctx.error(f"{node.describe()}: operands are laid out differently in memory "
                            f"({sorted(layouts)})")
        ctx.layout[node.name] = layouts.pop()
        ctx.check_bound(node)
        if ctx.integer:
            fracs = [ctx.input_fmt(node, i).frac for i in range(len(node.inputs))]
            acc_frac = max(fracs)
            shifts = [acc_frac - f for f in fracs]
        else:
            acc_frac, shifts = 0, [0] * len(node.inputs)
        params = {"size": math.prod(node.shape), "shifts": shifts, **ctx.finish(node, acc_frac)}
        return ctx.layer(node, "add.c.j2", params)


OPERATORS = (Add(),)
