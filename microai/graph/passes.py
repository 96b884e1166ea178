"""Graph rewrites that keep the reference executor's outputs unchanged.

Every pass returns a new validated Graph and leaves its argument untouched. Passes that only
rewire nodes (``remove_identity``, ``fold_zero_padding``, ``fuse_relu``) are bit-exact on
quantized graphs too. Passes that change weights (``batchnorm_to_scale``,
``fold_scale_into_conv``) need a float graph: fold BatchNorm before quantizing.
"""

from __future__ import annotations

import numpy as np

from microai import ops
from microai.graph.ir import Graph, GraphError, Node


def remove_identity(g: Graph) -> Graph:
    """Drop Identity nodes; their consumers read the Identity's input."""
    g = g.copy()
    for n in [n for n in g.nodes if n.op == "Identity"]:
        _bypass(g, n, n.inputs[0])
    return _finish(g, "remove_identity")


def fold_zero_padding(g: Graph) -> Graph:
    """Merge a ZeroPadding whose consumers all absorb padding of its dimension (convolutions) into theirs."""
    g = g.copy()
    for pad in [n for n in g.nodes if n.op in ("ZeroPadding1D", "ZeroPadding2D")]:
        dims = ops.of(pad).dims
        users = g.consumers(pad.name)
        if not users or pad.name == g.output or any(not ops.of(u).absorbs_padding or ops.of(u).dims != dims
                                                     for u in users):
            continue
        for conv in users:
            old = conv.attrs.get("padding", [0] * len(pad.attrs["padding"]))
            conv.attrs["padding"] = [int(a) + int(b) for a, b in zip(old, pad.attrs["padding"], strict=True)]
        _bypass(g, pad, pad.inputs[0])
    return _finish(g, "fold_zero_padding")


def batchnorm_to_scale(g: Graph) -> Graph:
    """BatchNorm -> Scale with ``s = gamma / sqrt(var + eps)``, ``b = beta - s * mean`` (float64 math)."""
    bns = [n for n in g.nodes if n.op == "BatchNorm"]
    if bns and g.is_quantized:
        raise GraphError(f"{bns[0].describe()}: BatchNorm in a quantized graph; convert it before quantizing")
    g = g.copy()
    for n in g.nodes:
        if n.op != "BatchNorm":
            continue
        w = {k: v.astype(np.float64) for k, v in n.weights.items()}
        scale = w["gamma"] / np.sqrt(w["var"] + float(n.attrs.get("eps", 1e-5)))
        n.op = "Scale"
        bias = w["beta"] - scale * w["mean"]
        n.weights = {"scale": scale.astype(np.float32), "bias": bias.astype(np.float32)}
        n.attrs = {k: v for k, v in n.attrs.items() if k != "eps"}
    return _finish(g, "batchnorm_to_scale")


def fold_scale_into_conv(g: Graph) -> Graph:
    """Fold a Scale into the Conv/Dense it directly follows when that is the Scale's only producer use.

    ``kernel[o] *= s[o]``, ``bias = bias * s + b``; the Conv keeps its name and takes the Scale's place.
    """
    g = g.copy()
    for scale in [n for n in g.nodes if n.op == "Scale"]:
        prod = g.node(scale.inputs[0])
        if (not ops.of(prod).folds_scale or "activation" in prod.attrs
                or prod.name == g.output or len(g.consumers(prod.name)) != 1):
            continue
        if g.is_quantized:
            raise GraphError(f"{scale.describe()}: folding into {prod.describe()} changes weights; "
                             f"fold before quantizing")
        s = scale.weights["scale"].astype(np.float64)
        k = prod.weights["kernel"].astype(np.float64)
        prod.weights["kernel"] = (k * s.reshape((-1,) + (1,) * (k.ndim - 1))).astype(np.float32)
        prod.weights["bias"] = (prod.weights["bias"].astype(np.float64) * s
                                + scale.weights["bias"]).astype(np.float32)
        if "activation" in scale.attrs:
            prod.attrs["activation"] = scale.attrs["activation"]
        _bypass(g, scale, prod.name)
    return _finish(g, "fold_scale_into_conv")


def fuse_relu(g: Graph) -> Graph:
    """ReLU after a ``relu_fusable`` producer used only by it -> ``attrs["activation"] = "relu"``."""
    g = g.copy()
    for relu in [n for n in g.nodes if n.op == "ReLU"]:
        prod = g.node(relu.inputs[0])
        if (not ops.of(prod).relu_fusable or "activation" in prod.attrs or prod.name == g.output
                or len(g.consumers(prod.name)) != 1):
            continue
        if g.is_quantized and relu.formats.get("output") != prod.formats.get("output"):
            raise GraphError(f"{relu.describe()}: output format differs from {prod.describe()}'s")
        prod.attrs["activation"] = "relu"
        _bypass(g, relu, prod.name)
    return _finish(g, "fuse_relu")


def simplify(g: Graph) -> Graph:
    """All passes in dependency order; weight-changing ones only on float graphs."""
    g = fold_zero_padding(remove_identity(g))
    if not g.is_quantized:
        g = fold_scale_into_conv(batchnorm_to_scale(g))
    return fuse_relu(g)


def binary_adds(g: Graph) -> Graph:
    """An Add of n > 2 tensors -> a chain of n - 1 two-operand Adds (TFLite's ADD is binary).

    The last Add of the chain keeps the node's name and activation; the others are ``<name>_<i>``. Float
    graphs only: the intermediate sums need formats of their own, which quantization gives them.
    """
    adds = [n for n in g.nodes if n.op == "Add" and len(n.inputs) > 2]
    if adds and g.is_quantized:
        raise GraphError(f"{adds[0].describe()}: splitting an Add of {len(adds[0].inputs)} tensors needs a "
                         f"float graph")
    g = g.copy()
    names = {n.name for n in g.nodes}
    for add in adds:
        node = g.node(add.name)
        chain, prev = [], node.inputs[0]
        for i, operand in enumerate(node.inputs[1:-1], start=1):
            name = f"{node.name}_{i}"
            if name in names:
                raise GraphError(f"{node.describe()}: cannot split it, a node is already named {name!r}")
            chain.append(Node(name, "Add", [prev, operand]))
            names.add(name)
            prev = name
        node.inputs = [prev, node.inputs[-1]]
        at = g.nodes.index(node)
        g.nodes[at:at] = chain
    return _finish(g, "binary_adds")


def _bypass(g: Graph, node: Node, replacement: str) -> None:
    """Remove ``node``; its consumers (and the graph output) read ``replacement`` instead."""
    for n in g.nodes:
        n.inputs = [replacement if i == node.name else i for i in n.inputs]
    if g.output == node.name:
        g.output = replacement
    g.nodes = [n for n in g.nodes if n is not node]


def _finish(g: Graph, name: str) -> Graph:
    g.metadata.setdefault("passes", []).append(name)
    g.validate()
    return g
