"""The operator registry: one consistent set of facts per operator, read by every stage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import codegen
from microai import ops
from microai.graph import Graph, GraphError, Node, QFormat
from microai.graph.passes import simplify
from microai.ops.base import IntegerSemantics, Operator, Shape, as_list, single, spatial
from microai.ops.pow2 import POW2
from microai.ops.tflite import TFLITE
from microai.quant import reference
from microai.quant.formats import saturate
from microai.quant.ptq import quantize_ptq


@pytest.mark.parametrize("module", ["microai.ops", "microai.graph", "microai.quant.reference", "codegen"])
def test_every_package_imports_first_without_a_cycle(module: str) -> None:
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


@pytest.mark.parametrize("name", sorted(ops.REGISTRY))
def test_facts_are_consistent(name: str) -> None:
    op = ops.get(name)
    # the paper's scheme has every operator but those only TFLite models bring, TFLite's scheme every
    # operator but those TFLite lacks (a BatchNorm or Scale that could not fold)
    tflite_only, pow2_only = ("DepthwiseConv1D", "DepthwiseConv2D", "Mean"), ("BatchNorm", "Scale")
    assert op.name == name and set(op.integer) <= set(ops.SCHEMES)
    assert (POW2 in op.integer) != (name in tflite_only) and (TFLITE in op.integer) != (name in pow2_only)
    assert not op.alias or op.keeps_input_format  # an alias shares its input's bytes, hence its format
    assert not (op.alias and op.lowers_to_c)
    assert op.dims in (None, 1, 2) and (op.dims is None) == (name[-2:] not in ("1D", "2D"))
    if name not in ("Input", "BatchNorm"):  # BatchNorm is folded by the passes before codegen
        assert op.lowers_to_c or op.alias


def test_unknown_operators_are_named() -> None:
    with pytest.raises(GraphError, match="unsupported operator 'Conv3D'; supported: .*'Conv1D'"):
        ops.get("Conv3D")
    g = Graph([Node("x", "Input", attrs={"shape": [3]}), Node("y", "Gelu", ["x"])], "y")
    with pytest.raises(GraphError, match=r"node 'y' \(Gelu\): unsupported operator"):
        g.validate()


def test_attribute_helpers_normalise_and_name_the_node() -> None:
    assert as_list(2, 3) == [2, 2, 2] and as_list((1, 2), 2) == [1, 2]
    node = Node("p", "MaxPool2D", attrs={"pool_size": 2})
    assert spatial(node, "pool_size", 2) == [2, 2]
    assert spatial(node, "stride", 2, [2, 2]) == [2, 2]
    with pytest.raises(GraphError, match="'p'.*'stride' is required"):
        spatial(node, "stride", 2)
    with pytest.raises(GraphError, match="'p'.*'pool_size' needs 2 values, got \\[2, 2, 2\\]"):
        spatial(Node("p", "MaxPool2D", attrs={"pool_size": [2, 2, 2]}), "pool_size", 2)


class _Negate(IntegerSemantics):
    def run(self, graph: Graph, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return saturate(-ins[0], graph.width)


class Negate(Operator):
    """A test operator defined outside microai.ops: registering it is all the IR, passes,
    reference executor and PTQ need."""

    name = "Negate"
    keeps_input_format = True
    integer = {POW2: _Negate()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return single(ins, node)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return -ins[0]


def test_a_new_operator_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setitem(ops.REGISTRY, "Negate", Negate())
    rng = np.random.default_rng(0)
    g = Graph([Node("x", "Input", attrs={"shape": [4]}), Node("neg", "Negate", ["x"]),
               Node("fc", "Dense", ["neg"], {}, {"kernel": rng.standard_normal((2, 4)).astype(np.float32),
                                                 "bias": np.zeros(2, np.float32)})], "fc")
    g.validate()
    x = rng.standard_normal((16, 4)).astype(np.float32)
    np.testing.assert_allclose(reference.run(g, x), (-x) @ g.node("fc").weights["kernel"].T, rtol=1e-6)
    q = quantize_ptq(g, x, 8, "layer", rounding="nearest", quant_rounding="nearest")
    assert q.node("neg").formats == {"output": q.node("x").formats["output"]}
    assert isinstance(q.node("neg").formats["output"], QFormat)
    np.testing.assert_allclose(reference.dequantize_output(q, reference.run(q, x)), reference.run(g, x),
                               atol=0.1)
    assert [n.op for n in simplify(g).nodes] == ["Input", "Negate", "Dense"]
    with pytest.raises(codegen.CodegenError, match=r"'neg' \(Negate\): operator not supported by the C gen"):
        codegen.convert(g, tmp_path / "c")
