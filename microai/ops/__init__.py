"""The operator registry: every fact about an operator lives in its module here, read by all stages.

``get("Conv1D")`` / ``of(node)`` return the :class:`~microai.ops.base.Operator` that the graph IR
(weight names, shape rule), the passes (ReLU fusion, folding), the reference executor (float and
integer semantics), the quantizers (format rules, accumulator bound) and codegen (lowering to a C
template) consult; nothing outside this package lists operators. How to add an operator, and what
each fact is: docs/operators.md.

Integer semantics are keyed by quantization scheme (``Operator.integer[scheme]``);
:func:`scheme_of` says which scheme a node uses: the paper's ``pow2`` (:mod:`microai.ops.pow2`) or
TFLite's ``tflite`` (:mod:`microai.ops.tflite`), as recorded in ``Graph.scheme``.
"""

from __future__ import annotations

from microai.graph.ir import Graph, GraphError, Node
from microai.ops import add, conv, dense, depthwise, mean, pool, relu, reshape, scale, softmax, zero_padding
from microai.ops.base import IntegerSemantics, Operator
from microai.ops.pow2 import POW2
from microai.ops.tflite import TFLITE

_MODULES = (reshape, conv, depthwise, dense, scale, pool, mean, add, relu, zero_padding, softmax)

#: Every operator by name.
REGISTRY: dict[str, Operator] = {op.name: op for module in _MODULES for op in module.OPERATORS}
#: Quantization schemes with integer semantics.
SCHEMES = (POW2, TFLITE)


def get(name: str) -> Operator:
    """The operator called ``name``; GraphError listing the supported ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise GraphError(f"unsupported operator '{name}'; supported: {sorted(REGISTRY)}") from None


def of(node: Node) -> Operator:
    """The operator of ``node``; GraphError naming the node if it is unknown."""
    op = REGISTRY.get(node.op)
    if op is None:
        raise GraphError(f"{node.describe()}: unsupported operator; supported: {sorted(REGISTRY)}")
    return op


def scheme_of(graph: Graph, node: Node) -> str:
    """The quantization scheme of a node of a quantized graph: the graph's."""
    return graph.scheme


def integer(graph: Graph, node: Node) -> IntegerSemantics:
    """``node``'s integer semantics in ``graph``'s scheme."""
    scheme = scheme_of(graph, node)
    try:
        return of(node).integer[scheme]
    except KeyError:
        raise GraphError(f"{node.describe()}: no integer semantics in the '{scheme}' scheme") from None


def relu_fusable() -> list[str]:
    """Names of the operators a ReLU can be fused into (for error messages)."""
    return sorted(name for name, op in REGISTRY.items() if op.relu_fusable)


__all__ = ["POW2", "REGISTRY", "SCHEMES", "TFLITE", "IntegerSemantics", "Operator", "get", "integer", "of",
           "relu_fusable", "scheme_of"]
