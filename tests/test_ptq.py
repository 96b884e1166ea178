"""Post-training quantization: formats recorded as specified, accuracy kept, artifacts round-trip."""

import numpy as np
import pytest
import torch
from torch import nn

from microai.graph.ir import Graph, GraphError, Node, QFormat
from microai.graph.passes import simplify
from microai.graph.torch_import import from_torch
from microai.quant import reference as R
from microai.quant.ptq import calibrate, quantize_ptq

SHAPE = (2, 32)


def _signals(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of noisy two-channel waves differing in frequency (a tiny HAR stand-in)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    t = np.arange(SHAPE[1])
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    freq = (1.0 + y[:, None]) * 2 * np.pi / 16
    x = np.stack([np.sin(freq * t + phase), np.cos(freq * t + phase)], axis=1) * 2.0
    return (x + rng.normal(0, 2.0, x.shape)).astype(np.float32), y


@pytest.fixture(scope="module")
def trained() -> tuple[Graph, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 8, 3, padding=1), nn.BatchNorm1d(8), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(8, 3),
    )
    x_train, y_train = _signals(600, 0)
    x_test, y_test = _signals(300, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: threads only contend with each other (20x slower on a busy host)
    try:
        for step in range(150):
            idx = torch.arange(step * 64, step * 64 + 64) % len(xt)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return from_torch(model.eval(), SHAPE), x_train, y_train, x_test, y_test


def test_int16_q7_9_ptq_keeps_the_accuracy_of_a_trained_model(trained) -> None:
    g, x_train, _, x_test, y_test = trained
    float_acc = R.accuracy(g, x_test, y_test)
    assert float_acc > 0.85  # learned but not saturated (noisy classes), so the comparison means something
    q = quantize_ptq(g, x_train, 16, "network", fixed_frac=9)
    assert q.precision == "int16"
    assert abs(R.accuracy(q, x_test, y_test) - float_acc) <= 0.01
    assert np.mean(R.predict(q, x_test) == R.predict(g, x_test)) >= 0.99
    coarse = quantize_ptq(g, x_train, 5, "network")  # control: too few bits do lose accuracy here
    assert R.accuracy(coarse, x_test, y_test) < float_acc - 0.1
    logits = R.run(g, x_test)
    logits_err = np.abs(R.dequantize_output(q, R.run(q, x_test)) - logits).max()
    assert logits_err < 0.01 * np.abs(logits).max()  # truncation everywhere: a biased error of a few LSB


@pytest.mark.parametrize("width", [8, 12])
def test_per_layer_ptq_at_lower_widths(trained, width: int) -> None:
    g, x_train, _, x_test, y_test = trained
    q = quantize_ptq(g, x_train, width, "layer", quant_rounding="nearest", rounding="nearest")
    assert R.accuracy(q, x_test, y_test) >= R.accuracy(g, x_test, y_test) - 0.05
    assert all(R.accumulator_bound(q, n) <= R.LONG_MAX for n in q.nodes)


def test_network_formats_are_recorded_as_specified(trained) -> None:
    g, x_train, *_ = trained
    q = quantize_ptq(g, x_train, 16, "network", fixed_frac=9)
    assert "BatchNorm" not in {n.op for n in q.nodes}  # folded into the conv before quantizing
    for n in q.nodes:
        assert set(n.formats) == {"output", *n.weights}, n.name
        assert all(f == QFormat(16, 9) for f in n.formats.values()), n.name
        for key, w in n.weights.items():
            assert w.dtype == np.int32 and w.min() >= -32768 and w.max() <= 32767, (n.name, key)
    assert q.metadata["quantization"] == {
        "method": "ptq", "granularity": "network", "width": 16, "fixed_frac": 9,
        "calibration_samples": len(x_train), "weight_bits_dropped_for_int32_accumulator": {}}
    auto = quantize_ptq(g, x_train, 16, "network")
    source = simplify(g)  # what PTQ calibrates
    largest = max(max(calibrate(source, x_train).values()),
                  max(float(np.abs(w).max()) for n in source.nodes for w in n.weights.values()))
    expected = 16 - (1 + int(np.floor(np.log2(largest)))) - 1
    assert {f.frac for n in auto.nodes for f in n.formats.values()} == {expected}


def test_layer_formats_follow_each_tensor_and_pass_through_keeps_the_input_format(trained) -> None:
    g, x_train, *_ = trained
    q = quantize_ptq(g, x_train, 8, "layer")
    ranges = calibrate(simplify(g), x_train)  # node names survive simplify
    for n in q.nodes:
        if n.op in ("MaxPool1D", "Flatten"):
            assert n.formats["output"] == q.node(n.inputs[0]).formats["output"], n.name
        elif n.op in ("Conv1D", "Dense"):
            m = 1 + int(np.floor(np.log2(ranges[n.name])))
            assert n.formats["output"].frac == 8 - m - 1, n.name
            n_acc = q.node(n.inputs[0]).formats["output"].frac + n.formats["kernel"].frac
            assert n.formats["bias"].frac <= n_acc


def test_per_layer_ptq_drops_weight_bits_to_fit_the_int32_accumulator() -> None:
    """Tiny inputs and weights give fine formats; aligning a large bias to them would overflow int32."""
    g = Graph([Node("x", "Input", attrs={"shape": [1]}),
               Node("fc", "Dense", ["x"], {}, {"kernel": np.array([[-0.0068]], np.float32),
                                               "bias": np.array([0.7], np.float32)})], "fc")
    g.validate()
    x = np.full((4, 1), 0.06, np.float32)
    q = quantize_ptq(g, x, 12, "layer")
    assert R.accumulator_bound(q, q.node("fc")) <= R.LONG_MAX
    assert q.metadata["quantization"]["weight_bits_dropped_for_int32_accumulator"]["fc"] >= 1
    np.testing.assert_allclose(R.dequantize_output(q, R.run(q, x)), R.run(g, x), atol=2.0 ** -9)


def test_quantized_graph_save_load_round_trip_is_bit_exact(trained, tmp_path) -> None:
    g, x_train, _, x_test, _ = trained
    q = quantize_ptq(g, x_train, 8, "layer", rounding="nearest", quant_rounding="trunc")
    q.save(tmp_path / "q.npz")
    back = Graph.load(tmp_path / "q")
    assert (back.precision, back.rounding, back.quant_rounding) == ("int8", "nearest", "trunc")
    for a, b in zip(back.nodes, q.nodes, strict=True):
        assert a.formats == b.formats and a.attrs == b.attrs
        for key in b.weights:
            assert a.weights[key].dtype == np.int32
            np.testing.assert_array_equal(a.weights[key], b.weights[key])
    np.testing.assert_array_equal(R.run(back, x_test), R.run(q, x_test))


def test_invalid_requests_are_rejected(trained) -> None:
    g, x_train, *_ = trained
    with pytest.raises(ValueError, match="2..16"):
        quantize_ptq(g, x_train, 17)
    with pytest.raises(ValueError, match="fixed_frac=9 needs granularity 'network'"):
        quantize_ptq(g, x_train, 16, "layer", fixed_frac=9)
    with pytest.raises(ValueError, match="granularity"):
        quantize_ptq(g, x_train, 16, "channel")
    with pytest.raises(ValueError, match="rounding"):
        quantize_ptq(g, x_train, 16, rounding="ceil")
    with pytest.raises(GraphError, match="calibration set is empty"):
        quantize_ptq(g, x_train[:0], 16)
    with pytest.raises(GraphError, match="already quantized"):
        quantize_ptq(quantize_ptq(g, x_train, 16), x_train, 8)


def test_network_q7_9_gives_up_weight_bits_where_a_layer_would_overflow_int32(tmp_path) -> None:
    """A user model (issue 9): BatchNorm with small running variances, folded into its convolution, makes
    weights of magnitude ~20; at the paper's uniform Q7.9 the second convolution's worst case
    (fan-in 160 x |w| ~20 x 2**9 x 2**15) exceeds int32, and convert() refused the graph PTQ returned."""
    import codegen

    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv1d(9, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Conv1d(32, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(32, 6))
    with torch.no_grad():
        for bn in (model[1], model[4]):
            bn.running_var.uniform_(0.001, 0.003)
            bn.running_mean.normal_(0, 0.1)
    g = from_torch(model.eval(), (9, 64))
    x = np.random.default_rng(0).normal(0, 0.1, (64, 9, 64)).astype(np.float32)
    q = quantize_ptq(g, x, 16, "network", fixed_frac=9)
    dropped = q.metadata["quantization"]["weight_bits_dropped_for_int32_accumulator"]
    assert dropped and set(dropped) <= {n.name for n in q.nodes if n.op == "Conv1D"}
    for n in q.nodes:
        assert R.accumulator_bound(q, n) <= R.LONG_MAX, n.name
        expected = QFormat(16, 9 - dropped.get(n.name, 0))
        assert n.formats.get("kernel", expected) == expected and n.formats["output"] == QFormat(16, 9), n.name
    codegen.convert(q, tmp_path / "c")  # refused before: "worst-case accumulator ... exceeds the int32"
    assert codegen.check_against_reference(q, tmp_path / "c", x[:16])["matches"] == 1.0
