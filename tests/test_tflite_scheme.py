"""TFLite's integer scheme: its arithmetic against plain-integer transcriptions of TFLite's C++, MicroAI's PTQ
and QAT in it, and the generated C against the reference executor over random layer geometries."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codegen_support import whole_row_bands

from codegen import convert
from codegen.host import run_host
from microai.graph.ir import AffineFormat, Graph, GraphError, Node
from microai.ops import tflite
from microai.quant import reference as R
from microai.quant.affine import activation_format, param_bytes, quantize_tflite, weight_format

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# ----------------------------------------------------------------------------- TFLite's C++, transcribed
def srdhm_c(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul as written in fixedpoint.h."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    total = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    return abs(total) // (1 << 31) * (1 if total >= 0 else -1)  # C's integer division truncates


def rdbpot_c(x: int, e: int) -> int:
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(INT32_MIN, INT32_MAX), st.integers(0, INT32_MAX), st.integers(-31, 0))
def test_requantization_is_tflite_s_double_rounding(acc: int, multiplier: int, shift: int) -> None:
    node = Node("n", "Dense")
    got = int(tflite.multiply_by_quantized_multiplier(node, np.array([acc]), multiplier, shift)[0])
    assert got == rdbpot_c(srdhm_c(acc, multiplier), -shift)


def test_quantize_multiplier_matches_tflite() -> None:
    # real = q * 2**shift with q in [0.5, 1), stored as round(q * 2**31); q rounding up to 1 moves the power
    assert tflite.quantize_multiplier(0.75) == (round(0.75 * 2**31), 0)
    assert tflite.quantize_multiplier(0.001) == (round(0.001 * 2**9 * 2**31), -9)
    assert tflite.quantize_multiplier(1 - 2**-40) == (1 << 30, 1)
    assert tflite.quantize_multiplier(2**-40) == (0, 0) and tflite.quantize_multiplier(0.0) == (0, 0)


def test_activation_format_is_tensorflow_s_nudged_range() -> None:
    assert activation_format(0.0, 2.55) == AffineFormat.per_tensor(8, 0.01, -128)
    assert activation_format(-1.0, 3.0).zero_point == (-64,)  # -128 + 1 / (4 / 255) = -64.25
    assert activation_format(1.0, 3.0) == activation_format(0.0, 3.0)  # the range always contains 0
    assert activation_format(-2.0, 1.0, 16) == AffineFormat.per_tensor(16, 2 / 32767, 0)
    w = weight_format(np.array([[0.5, -1.27], [0.0, 0.0]]))
    assert w.scale == (np.float32(0.01), 1.0) and w.zero_point == (0, 0)


def test_affine_formats_round_trip_and_are_checked(tmp_path: Path) -> None:
    fmt = AffineFormat(8, (0.1, 0.025), (0, 0))
    assert AffineFormat.from_json(fmt.to_json()) == fmt and str(fmt) == "int8 per-channel(2)"
    with pytest.raises(GraphError, match="zero points"):
        AffineFormat(8, (0.1,), (300,))
    with pytest.raises(GraphError, match="scales must be finite and > 0"):
        AffineFormat(8, (0.0,), (0,))
    g = Graph([Node("x", "Input", attrs={"shape": [3]}, formats={"output": AffineFormat.per_tensor(8, .1)})],
              "x", precision="int8")
    with pytest.raises(GraphError, match="are not QFormats of the 'pow2' scheme"):
        g.validate()


# ----------------------------------------------------------------------------- random layers, C vs reference
def _weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.normal(0, 1 / math.sqrt(math.prod(shape[1:]) or 1), shape)).astype(np.float32)


@st.composite
def layer_graphs(draw) -> tuple[Graph, np.ndarray, dict]:
    """A float graph around one randomly shaped operator, its calibration/test inputs and the quantization."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kind = draw(st.sampled_from(["conv", "depthwise", "dense", "maxpool", "avgpool", "add", "mean", "pad",
                                 "softmax"]))
    dims = draw(st.sampled_from([1, 2]))
    c = draw(st.integers(1, 9))
    size = [draw(st.integers(3, 9)) for _ in range(dims)]
    nodes = [Node("x", "Input", attrs={"shape": [c, *size]})]
    k = [draw(st.integers(1, min(4, s))) for s in size]
    stride = [draw(st.integers(1, 3)) for _ in range(dims)]
    pad = [draw(st.integers(0, kk - 1)) for kk in k for _ in range(2)]
    act = draw(st.sampled_from([None, "relu", "relu6"]))
    attrs = {"activation": act} if act else {}
    last = "x"
    if kind in ("conv", "depthwise"):
        out = draw(st.integers(1, 9)) if kind == "conv" else c * draw(st.integers(1, 2))
        kernel = _weights(rng, out, c if kind == "conv" else 1, *k)
        op = f"{'Conv' if kind == 'conv' else 'DepthwiseConv'}{dims}D"
        nodes.append(Node("l", op, ["x"], {"stride": stride, "padding": pad, **attrs},
                          {"kernel": kernel, "bias": rng.normal(0, 0.3, out).astype(np.float32)}))
        last = "l"
    elif kind in ("maxpool", "avgpool"):
        nodes.append(Node("l", f"{'Max' if kind == 'maxpool' else 'Avg'}Pool{dims}D", ["x"],
                          {"pool_size": k, "stride": stride, "padding": pad,
                           **(attrs if kind == "maxpool" else {})}))
        last = "l"
    elif kind == "pad":
        nodes.append(Node("l", f"ZeroPadding{dims}D", ["x"], {"padding": [p + 1 for p in pad]}))
        last = "l"
    elif kind == "add":
        nodes += [Node("a", f"Conv{dims}D", ["x"], {}, {"kernel": _weights(rng, c, c, *[1] * dims),
                                                        "bias": np.zeros(c, np.float32)}),
                  Node("l", "Add", ["x", "a"], attrs)]
        last = "l"
    elif kind == "mean":
        nodes.append(Node("l", "Mean", ["x"]))
        last = "l"
    if kind != "mean":
        nodes.append(Node("f", "Flatten", [last]))
        last = "f"
    n_in = Graph([*nodes], last).copy()
    n_in.validate()
    width = n_in.node(last).shape[0]
    nodes.append(Node("d", "Dense", [last], {}, {"kernel": _weights(rng, 5, width),
                                                 "bias": rng.normal(0, 0.1, 5).astype(np.float32)}))
    output = "d"
    if kind == "softmax":
        nodes.append(Node("s", "Softmax", ["d"], {"beta": draw(st.sampled_from([1.0, 0.5]))}))
        output = "s"
    g = Graph(nodes, output)
    g.validate()
    x = (rng.normal(0, 1, (40, c, *size)) * draw(st.sampled_from([0.3, 1.0, 3.0]))).astype(np.float32)
    mode = draw(st.sampled_from(["int8", "int16x8", "mixed"]))
    options = {"activations": 16 if mode == "int16x8" else 8,
               "int16_layers": ["l"] if mode == "mixed" and kind not in ("softmax", "pad") else []}
    if kind == "softmax" and mode == "int16x8":
        options["activations"] = 8
    return g, x, options


@settings(max_examples=40, deadline=None)
@given(layer_graphs(), st.sampled_from(["reference", "optimized"]), st.booleans())
def test_generated_c_matches_the_reference_executor(tmp_path_factory, case, kernels: str,
                                                    whole_rows: bool) -> None:
    g, x, options = case
    q = quantize_tflite(g, x[:20], **options)
    out = tmp_path_factory.mktemp("c")
    with whole_row_bands(whole_rows):
        convert(q, out, kernels=kernels)
    np.testing.assert_array_equal(run_host(q, out, x).reshape(len(x), -1), R.run(q, x).reshape(len(x), -1))


# ----------------------------------------------------------------------------- PTQ and QAT in the scheme
@pytest.fixture(scope="module")
def trained_resnet(synthetic_har):
    import torch

    from microai.graph.torch_import import from_torch
    from microai.models import build_model
    from microai.train import TrainConfig, train

    data = synthetic_har
    torch.manual_seed(0)
    net = build_model("resnetv1-6", data.input_shape, data.num_classes, 8)
    cfg = TrainConfig.from_dict({"epochs": 2, "batch_size": 64, "lr": 0.05, "momentum": 0.9,
                                 "weight_decay": 5e-4, "milestones": [1], "gamma": 0.1, "mixup_alpha": 0.0})
    train(net, data.x_train[:3000], data.y_train[:3000], cfg, seed=0, progress=False)
    return from_torch(net.eval(), data.input_shape), data


def test_ptq_weights_are_tflite_s_and_accuracy_follows_the_float_model(trained_resnet) -> None:
    from microai.tflite import runtime
    from microai.tflite.convert import representative_samples, to_tflite
    from microai.tflite.importer import from_tflite

    graph, data = trained_resnet
    calibration = representative_samples(data.x_train, 500)
    ours = quantize_tflite(graph, calibration)
    theirs = from_tflite(to_tflite(graph, "int8", calibration))
    def weights(g: Graph) -> list:
        return sorted((n.weights["kernel"].tobytes(), n.weights["bias"].tobytes())
                      for n in g.nodes if n.weights)

    assert weights(ours) == weights(theirs)
    assert ours.input.formats == theirs.input.formats

    def activations(g: Graph) -> list:  # same zero points; scales up to float32 rounding of the calibration
        return sorted((n.op, f.zero_point[0], f.scale[0]) for n in g.nodes for f in [n.formats["output"]])

    for (op, zp, scale), (op2, zp2, scale2) in zip(activations(ours), activations(theirs), strict=True):
        assert (op, zp) == (op2, zp2) and scale == pytest.approx(scale2, rel=1e-6)
    x, y = data.x_test[:1000], data.y_test[:1000]
    float_acc = R.accuracy(graph, x, y)
    assert R.accuracy(ours, x, y) >= float_acc - 0.02
    assert abs(R.accuracy(ours, x, y) - runtime.accuracy(to_tflite(graph, "int8", calibration), x, y)) < 0.02
    assert param_bytes(ours) == sum(n.weights["kernel"].size + 4 * n.weights["bias"].size
                                    for n in ours.nodes if n.weights)


def test_int16x8_per_network_and_per_layer(trained_resnet) -> None:
    graph, data = trained_resnet
    x = data.x_test[:500]
    wide = quantize_tflite(graph, data.x_train[:300], activations=16)
    assert wide.precision == "int16x8" and {n.formats["output"].width for n in wide.nodes} == {16}
    narrow = quantize_tflite(graph, data.x_train[:300])
    float_classes = R.predict(graph, x)
    agree_wide, agree_narrow = (np.mean(R.predict(g, x) == float_classes) for g in (wide, narrow))
    assert agree_wide >= max(0.95, agree_narrow)  # 16-bit activations lose less than 8-bit ones
    first_conv = next(n.name for n in wide.nodes if n.op == "Conv1D")
    mixed = quantize_tflite(graph, data.x_train[:300], int16_layers=[first_conv])
    widths = {n.name: n.formats["output"].width for n in mixed.nodes}
    assert widths[first_conv] == 16 and sorted(set(widths.values())) == [8, 16]
    with pytest.raises(GraphError, match="int16 layers \\['nope'\\] are not nodes"):
        quantize_tflite(graph, data.x_train[:300], int16_layers=["nope"])


@pytest.mark.slow
def test_qat_in_the_tflite_scheme_exports_what_it_trained(trained_resnet, tmp_path: Path) -> None:
    from microai.quant.affine_qat import train_qat_tflite
    from microai.train import TrainConfig

    graph, data = trained_resnet
    cfg = TrainConfig.from_dict({"epochs": 1, "batch_size": 64, "lr": 0.005, "momentum": 0.9,
                                 "weight_decay": 5e-4, "milestones": [1], "gamma": 0.1, "mixup_alpha": 0.0})
    q, history = train_qat_tflite(graph, data.x_train[:2000], data.y_train[:2000], cfg, seed=0,
                                  calibration_samples=300, progress=False)
    assert q.scheme == "tflite" and q.metadata["quantization"]["method"] == "qat" and history["epoch"] == [1]
    x = data.x_test[:300]
    assert np.mean(R.predict(q, x) == R.predict(graph, x)) > 0.8
    convert(q, tmp_path / "c")
    np.testing.assert_array_equal(run_host(q, tmp_path / "c", x[:100]), R.run(q, x[:100]))


@pytest.mark.slow
def test_the_pipeline_stages_make_tflite_s_precisions(tmp_path: Path) -> None:
    """params.yaml's precisions in TFLite's scheme through the stage functions the workflow runs:
    quantize (PTQ, QAT, 16x8), evaluate, generated C checked on the host against the reference."""
    import json

    from microai import stages
    from microai.config import load_params

    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    params["datasets"]["synthetic-har"].update(n_train=128, n_test=32)
    params["train"]["synthetic-har"].update(epochs=1, milestones=[1], batch_size=32)
    params["qat"]["synthetic-har"].update(epochs=1, milestones=[1], batch_size=32)
    raw = tmp_path / "raw"
    stages.download("synthetic-har", params, raw)
    data = stages.prepare("synthetic-har", params, raw, tmp_path / "synthetic-har.npz")
    ckpt = tmp_path / "float32.pt"
    stages.train_float(data, "resnetv1-6", 4, 0, params, ckpt, tmp_path / "float32.train.json")
    for name, precision in (("int8-tflite", "int8"), ("int8-tflite-qat", "int8"), ("int16x8", "int16x8")):
        graph = tmp_path / f"{name}.json"
        stages.quantize(name, params, ckpt, data, 0, graph, tmp_path / f"{name}.quant.json")
        evaluated = stages.evaluate(graph, data, name, tmp_path / f"{name}.eval.json")
        assert evaluated["graph_precision"] == precision and 0 <= evaluated["accuracy"] <= 1
        assert json.loads(graph.read_text())["scheme"] == "tflite"
        convert(Graph.load(graph), tmp_path / name)
        checked = stages.check_host(graph, tmp_path / name, data, tmp_path / f"{name}.check.json")
        assert checked["matches"] == 1.0 and checked["vectors"] == 32
