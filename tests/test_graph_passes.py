"""Graph passes keep the reference executor's outputs: float within tolerance, quantized bit for bit."""

import numpy as np
import pytest
import torch
from torch import nn

from microai.graph import passes
from microai.graph.ir import Graph, GraphError, Node
from microai.graph.torch_import import from_torch
from microai.quant import reference as R
from microai.quant.ptq import quantize_ptq


class Net(nn.Module):
    """Padding before a conv, BatchNorm after a conv and after an Add, ReLU after pool/add/conv."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad1d((1, 1))
        self.conv = nn.Conv1d(2, 4, 3)
        self.bn = nn.BatchNorm1d(4)
        self.pool = nn.MaxPool1d(2)
        self.conv2 = nn.Conv1d(4, 4, 3, padding=1)
        self.bn_add = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4 * 8, 3)
        self.bn_fc = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.pool(self.bn(self.conv(self.pad(x)))))
        y = torch.relu(self.bn_add(torch.relu(self.conv2(y)) + y))
        return self.bn_fc(self.fc(y.flatten(1)))


def _float_graph() -> Graph:
    torch.manual_seed(0)
    model = Net()
    gen = torch.Generator().manual_seed(1)
    for bn in (model.bn, model.bn_add, model.bn_fc):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.2)
        bn.weight.data.copy_(torch.randn(bn.num_features, generator=gen))
    g = from_torch(model, (2, 16))
    return _insert_identity(g, "conv2")


def _insert_identity(g: Graph, before: str) -> Graph:
    """An Identity node feeding ``before`` (the importer already removes nn.Identity)."""
    g = g.copy()
    target = g.node(before)
    source = g.node(target.inputs[0])
    ident = Node(f"{before}_id", "Identity", [source.name], formats=dict(source.formats))
    target.inputs = [ident.name]
    g.nodes.insert(g.nodes.index(target), ident)
    g.validate()
    return g


X = np.random.default_rng(0).normal(size=(64, 2, 16)).astype(np.float32)


@pytest.mark.parametrize("name", ["remove_identity", "fold_zero_padding", "batchnorm_to_scale", "simplify"])
def test_each_pass_keeps_float_outputs(name: str) -> None:
    g = _float_graph()
    before = [(n.name, n.op) for n in g.nodes]
    out = getattr(passes, name)(g)
    assert [(n.name, n.op) for n in g.nodes] == before  # the argument is untouched
    np.testing.assert_allclose(R.run(out, X), R.run(g, X), rtol=1e-5, atol=1e-5)
    assert out.metadata["passes"][-1] == ("fuse_relu" if name == "simplify" else name)


def test_fold_scale_and_fuse_relu_keep_float_outputs() -> None:
    g = passes.batchnorm_to_scale(_float_graph())
    folded = passes.fold_scale_into_conv(g)
    np.testing.assert_allclose(R.run(folded, X), R.run(g, X), rtol=1e-5, atol=1e-5)
    fused = passes.fuse_relu(folded)
    np.testing.assert_allclose(R.run(fused, X), R.run(g, X), rtol=1e-5, atol=1e-5)


def test_simplify_leaves_only_what_cannot_be_folded() -> None:
    g = passes.simplify(_float_graph())
    ops = {n.name: (n.op, n.attrs.get("activation")) for n in g.nodes}
    assert not any(op in ("Identity", "ZeroPadding1D", "BatchNorm", "ReLU") for op, _ in ops.values())
    assert ops["conv"] == ("Conv1D", None)  # BatchNorm folded in; its ReLU follows the pool
    assert ops["pool"] == ("MaxPool1D", "relu")
    assert ops["conv2"] == ("Conv1D", "relu")
    assert ops["add"] == ("Add", None)  # the Add feeds a BatchNorm: kept as a Scale with the ReLU fused
    assert ops["bn_add"] == ("Scale", "relu")
    assert g.node("conv").attrs["padding"] == [1, 1]
    assert g.output == "fc"  # the final BatchNorm is folded into the Dense, which takes its place


def test_batchnorm_to_scale_formula() -> None:
    bn = {"mean": np.array([1.0, -2.0], np.float32), "var": np.array([3.0, 0.0], np.float32),
          "gamma": np.array([2.0, 1.0], np.float32), "beta": np.array([0.5, 0.0], np.float32)}
    g = Graph([Node("x", "Input", attrs={"shape": [2, 3]}),
               Node("bn", "BatchNorm", ["x"], {"eps": 1.0}, bn)], "bn")
    g.validate()
    s = passes.batchnorm_to_scale(g).node("bn")
    assert s.op == "Scale" and "eps" not in s.attrs
    np.testing.assert_allclose(s.weights["scale"], [1.0, 1.0])
    np.testing.assert_allclose(s.weights["bias"], [-0.5, 2.0])


def test_passes_leave_nodes_that_cannot_be_merged() -> None:
    kernel = np.ones((2, 2, 3), np.float32)
    g = Graph([
        Node("x", "Input", attrs={"shape": [2, 8]}),
        Node("pad", "ZeroPadding1D", ["x"], {"padding": [1, 1]}),
        Node("conv", "Conv1D", ["pad"], {}, {"kernel": kernel, "bias": np.zeros(2, np.float32)}),
        Node("pool", "MaxPool1D", ["pad"], {"pool_size": 2}),  # second consumer of pad: not a conv
        Node("relu", "ReLU", ["conv"]),
        Node("sum", "Add", ["conv", "relu"]),  # conv has two consumers: its ReLU cannot be fused
        Node("scale", "Scale", ["conv"], {}, {"scale": np.ones(2, np.float32),
                                              "bias": np.ones(2, np.float32)}),
    ], "sum")
    g.validate()
    out = passes.simplify(g)
    assert [n.op for n in out.nodes] == [n.op for n in g.nodes]
    assert "activation" not in out.node("conv").attrs


# ------------------------------------------------------------------ quantized graphs: bit-exact
def _unfuse(q: Graph) -> Graph:
    """Undo the rewiring passes on a quantized graph: ReLU nodes, ZeroPadding nodes and an Identity."""
    g = q.copy()
    nodes: list[Node] = []
    renames: dict[str, str] = {}
    for n in g.nodes:
        n.inputs = [renames.get(i, i) for i in n.inputs]
        pad = n.attrs.get("padding")
        if n.op == "Conv1D" and pad and any(pad):
            source = next(m for m in nodes if m.name == n.inputs[0])
            zp = Node(f"{n.name}_pad", "ZeroPadding1D", list(n.inputs), {"padding": pad},
                      formats=dict(source.formats))
            nodes.append(zp)
            n.inputs, n.attrs["padding"] = [zp.name], [0, 0]
        nodes.append(n)
        if n.attrs.pop("activation", None) == "relu":
            relu = Node(f"{n.name}_relu", "ReLU", [n.name], formats={"output": n.formats["output"]})
            nodes.append(relu)
            renames[n.name] = relu.name
    g.nodes = nodes
    g.output = renames.get(g.output, g.output)
    g.validate()
    return _insert_identity(g, g.output)


def test_rewiring_passes_are_bit_exact_on_quantized_graphs() -> None:
    q = quantize_ptq(_float_graph(), X, 8, "layer")
    assert any("activation" in n.attrs for n in q.nodes)
    unfused = _unfuse(q)
    assert {"ReLU", "ZeroPadding1D", "Identity"} <= {n.op for n in unfused.nodes}
    expected = R.run(q, X)
    np.testing.assert_array_equal(R.run(unfused, X), expected)
    for name in ("remove_identity", "fold_zero_padding", "fuse_relu"):
        np.testing.assert_array_equal(R.run(getattr(passes, name)(unfused), X), expected)
    again = passes.simplify(unfused)
    assert [(n.op, n.attrs) for n in again.nodes] == [(n.op, n.attrs) for n in q.nodes]
    np.testing.assert_array_equal(R.run(again, X), expected)


def test_weight_changing_passes_refuse_quantized_graphs() -> None:
    q = quantize_ptq(_float_graph(), X, 16, "network", fixed_frac=9)
    conv = next(n for n in q.nodes if n.op == "Conv1D")
    weights = {"scale": np.ones(4, np.int32), "bias": np.zeros(4, np.int32)}
    formats = dict(conv.formats, scale=conv.formats["kernel"])
    scale = Node("s", "Scale", [conv.name], {}, weights, formats=formats)
    consumer = q.consumers(conv.name)[0]
    consumer.inputs = ["s" if i == conv.name else i for i in consumer.inputs]
    q.nodes.insert(q.nodes.index(conv) + 1, scale)
    q.validate()
    with pytest.raises(GraphError, match="before quantizing"):
        passes.fold_scale_into_conv(q)
    passes.simplify(q)  # simplify applies only the bit-exact passes to a quantized graph
    bn = {k: np.ones(4, np.int32) for k in ("mean", "var", "gamma", "beta")}
    scale.op, scale.weights = "BatchNorm", bn
    with pytest.raises(GraphError, match="BatchNorm in a quantized graph"):
        passes.batchnorm_to_scale(q)
