"""Integer reference executor: bit-exact against a scalar reading of docs/arithmetic.md, error bounds
against float execution, overflow reporting and the public helpers."""

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from microai.graph.ir import Graph, GraphError, Node, QFormat
from microai.quant import reference as R
from microai.quant.ptq import quantize_ptq

LONG_MIN, LONG_MAX = -(1 << 31), (1 << 31) - 1


# ---------------------------------------------------------------- scalar model of docs/arithmetic.md
class Overflow(Exception):
    pass


def long_checked(v: int) -> int:
    if not LONG_MIN <= v <= LONG_MAX:
        raise Overflow
    return v


def shift_right(v: int, s: int, rounding: str) -> int:
    if rounding == "nearest":
        v = long_checked(v + (1 << (s - 1)))
    return v >> s  # Python's >> on ints is an arithmetic (floor) shift


def align(v: int, n_from: int, n_to: int, rounding: str) -> int:
    if n_to >= n_from:
        return long_checked(v << (n_to - n_from))
    return shift_right(v, n_from - n_to, rounding)


class ShiftTooLarge(Exception):
    pass


def requant(acc: int, n_acc: int, n_out: int, width: int, rounding: str) -> int:
    long_checked(acc)
    s = n_acc - n_out
    if abs(s) >= 32:  # C cannot shift an int32 by 32 bits or more
        raise ShiftTooLarge
    v = long_checked(acc << -s) if s < 0 else (shift_right(acc, s, rounding) if s > 0 else acc)
    return max(-(1 << (width - 1)), min((1 << (width - 1)) - 1, v))


def scalar_layer(op: str, x: np.ndarray, w: np.ndarray, b: np.ndarray, n: dict[str, int], width: int,
                 rounding: str, stride: int = 1, pad: tuple[int, int] = (0, 0)) -> np.ndarray:
    """One sample of Conv1D ((C, L) input), Dense ((C,)) or Scale ((C, L)), loops over Python ints."""
    n_acc = n["x"] + n["w"]
    if op == "Dense":
        return np.array([requant(align(int(b[o]), n["b"], n_acc, rounding)
                                 + sum(int(x[i]) * int(w[o, i]) for i in range(len(x))),
                                 n_acc, n["o"], width, rounding) for o in range(len(w))])
    if op == "Scale":
        return np.array([[requant(align(int(b[c]), n["b"], n_acc, rounding) + int(v) * int(w[c]),
                                  n_acc, n["o"], width, rounding) for v in x[c]] for c in range(len(x))])
    channels, length = x.shape
    out_len = (length + pad[0] + pad[1] - w.shape[2]) // stride + 1
    out = np.zeros((len(w), out_len), dtype=np.int64)
    for o in range(len(w)):
        for p in range(out_len):
            acc = align(int(b[o]), n["b"], n_acc, rounding)
            for c in range(channels):
                for k in range(w.shape[2]):
                    i = p * stride + k - pad[0]
                    if 0 <= i < length:
                        acc += int(x[c, i]) * int(w[o, c, k])
            out[o, p] = requant(acc, n_acc, n["o"], width, rounding)
    return out


def quantized_graph(nodes: list[Node], width: int, rounding: str = "floor") -> Graph:
    g = Graph(nodes, nodes[-1].name, precision=f"int{width}", rounding=rounding)
    g.validate()
    return g


def random_ints(rng: np.random.Generator, shape: tuple[int, ...], width: int) -> np.ndarray:
    return rng.integers(-(1 << (width - 1)), 1 << (width - 1), size=shape)


# ---------------------------------------------------------------- bit-exactness
@settings(max_examples=60, deadline=None)
@given(
    op=st.sampled_from(["Conv1D", "Dense", "Scale"]),
    width=st.integers(2, 16),
    rounding=st.sampled_from(["floor", "nearest"]),
    seed=st.integers(0, 2**32 - 1),
    channels=st.integers(1, 4),
    length=st.integers(1, 9),
    out_channels=st.integers(1, 4),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    fracs=st.tuples(*[st.integers(-3, 20)] * 4),
)
def test_layers_match_the_scalar_arithmetic_contract(op, width, rounding, seed, channels, length,
                                                     out_channels, kernel, stride, pad, fracs) -> None:
    """Conv1D/Dense/Scale: equal outputs, or AccumulatorOverflow exactly when an int32 value overflows.

    A requantization shift of 32 bits or more is a format error, reported before any data is looked at.
    """
    length = max(length, kernel - sum(pad))
    rng = np.random.default_rng(seed)
    n = dict(zip(("x", "w", "b", "o"), fracs, strict=True))
    in_shape = (channels,) if op == "Dense" else (channels, length)
    if op == "Dense":
        w_shape: tuple[int, ...] = (out_channels, channels)
    elif op == "Scale":
        w_shape = (channels,)
    else:
        w_shape = (out_channels, channels, kernel)
    w = random_ints(rng, w_shape, width)
    b = random_ints(rng, (w_shape[0],), width)
    x = random_ints(rng, (3, *in_shape), width)
    w_key = "scale" if op == "Scale" else "kernel"
    attrs = {"stride": stride, "padding": list(pad)} if op == "Conv1D" else {}
    g = quantized_graph([
        Node("x", "Input", attrs={"shape": list(in_shape)}, formats={"output": QFormat(width, n["x"])}),
        Node("layer", op, ["x"], attrs, {w_key: w.astype(np.int32), "bias": b.astype(np.int32)},
             formats={"output": QFormat(width, n["o"]), w_key: QFormat(width, n["w"]),
                      "bias": QFormat(width, n["b"])}),
    ], width, rounding)
    try:
        if abs(n["x"] + n["w"] - n["o"]) >= 32:
            raise ShiftTooLarge
        expected = np.stack([scalar_layer(op, s, w, b, n, width, rounding, stride, pad) for s in x])
    except Overflow:
        event("int32 overflow")
        with pytest.raises(R.AccumulatorOverflow, match="'layer'"):
            R.run_int(g, x)
        return
    except ShiftTooLarge:
        event("shift >= 32")
        with pytest.raises(GraphError, match="'layer'.*requantization shift"):
            R.run_int(g, x)
        return
    event("exact result")
    got = R.run_int(g, x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(2, 16),
    rounding=st.sampled_from(["floor", "nearest"]),
    seed=st.integers(0, 2**32 - 1),
    fracs=st.tuples(st.integers(-2, 18), st.integers(-2, 18), st.integers(-2, 18)),
)
def test_add_matches_the_scalar_arithmetic_contract(width, rounding, seed, fracs) -> None:
    """Add of the input and a ReLU-fused Dense with different formats."""
    rng = np.random.default_rng(seed)
    n_x, n_d, n_o = fracs
    w = random_ints(rng, (5, 5), width)
    x = random_ints(rng, (4, 5), width)
    zeros = np.zeros(5, dtype=np.int32)
    g = quantized_graph([
        Node("x", "Input", attrs={"shape": [5]}, formats={"output": QFormat(width, n_x)}),
        Node("d", "Dense", ["x"], {"activation": "relu"}, {"kernel": w.astype(np.int32), "bias": zeros},
             formats={"output": QFormat(width, n_d), "kernel": QFormat(width, 0), "bias": QFormat(width, 0)}),
        Node("sum", "Add", ["x", "d"], formats={"output": QFormat(width, n_o)}),
    ], width, rounding)
    try:
        expected = []
        for s in x:
            d = np.maximum(scalar_layer("Dense", s, w, zeros, {"x": n_x, "w": 0, "b": 0, "o": n_d},
                                        width, rounding), 0)
            n_c = max(n_x, n_d)
            acc = [long_checked(align(int(a), n_x, n_c, rounding) + align(int(c), n_d, n_c, rounding))
                   for a, c in zip(s, d, strict=True)]
            expected.append([requant(v, n_c, n_o, width, rounding) for v in acc])
    except Overflow:
        event("int32 overflow")
        with pytest.raises(R.AccumulatorOverflow):
            R.run_int(g, x)
        return
    event("exact result")
    np.testing.assert_array_equal(R.run_int(g, x), np.array(expected))


@pytest.mark.parametrize(("rounding", "expected"), [("floor", [-2, 2, -1, 1]), ("nearest", [-3, 3, -2, 2])])
def test_avgpool_divides_like_c(rounding: str, expected: list[int]) -> None:
    """Window sums -5, 5, -3, 3 over 2: C division truncates; nearest rounds half away from zero."""
    g = quantized_graph([
        Node("x", "Input", attrs={"shape": [1, 8]}, formats={"output": QFormat(8, 3)}),
        Node("p", "AvgPool1D", ["x"], {"pool_size": 2}, formats={"output": QFormat(8, 3)}),
    ], 8, rounding)
    out = R.run_int(g, np.array([[[-2, -3, 2, 3, -1, -2, 1, 2]]]))
    assert out.ravel().tolist() == expected


def test_shift_right_floor_and_nearest_on_negative_values() -> None:
    v = np.array([-5, -4, 5, 6])
    assert R.shift_right(v, 1, "floor").tolist() == [-3, -2, 2, 3]
    assert R.shift_right(v, 1, "nearest").tolist() == [-2, -2, 3, 3]
    assert R.shift_right(v, 0, "floor") is v
    with pytest.raises(ValueError, match="s >= 0"):
        R.shift_right(v, -1, "floor")


# ---------------------------------------------------------------- overflow and static bound
def _dense_graph(kernel: np.ndarray, bias: np.ndarray, width: int = 16, n_o: int = 0) -> Graph:
    return quantized_graph([
        Node("x", "Input", attrs={"shape": [kernel.shape[1]]}, formats={"output": QFormat(width, 0)}),
        Node("fc", "Dense", ["x"], {}, {"kernel": kernel.astype(np.int32), "bias": bias.astype(np.int32)},
             formats={"output": QFormat(width, n_o), "kernel": QFormat(width, 0), "bias": QFormat(width, 0)}),
    ], width)


def test_accumulator_overflow_is_reported_naming_the_layer() -> None:
    g = _dense_graph(np.full((1, 4), 32767), np.zeros(1))
    x = np.full((1, 4), 32767)  # 4 * 32767**2 > 2**31
    with pytest.raises(R.AccumulatorOverflow, match=r"node 'fc' \(Dense\).*int32"):
        R.run_int(g, x)
    assert R.accumulator_bound(g, g.node("fc")) > LONG_MAX
    assert isinstance(R.AccumulatorOverflow("x"), GraphError)


def test_accumulator_bound_is_reached_by_the_worst_input() -> None:
    kernel = np.array([[3, -7, 2], [1, 1, -1]])
    bias = np.array([-100, 5])
    g = _dense_graph(kernel, bias, width=8)
    bound = R.accumulator_bound(g, g.node("fc"))
    assert bound == 100 + 12 * 128
    # Most negative accumulator of output 0: x = -128 where w > 0 and x = 127 where w < 0.
    worst = np.where(kernel[0] > 0, -128, 127)
    acc = int(bias[0] + worst @ kernel[0])
    assert acc == -1629 and bound - abs(acc) == 7  # the bound assumes |x| = 128 on both sides
    assert R.accumulator_bound(g, g.node("x")) == 0


def test_left_shift_requantization_overflow_is_reported() -> None:
    g = _dense_graph(np.array([[1]]), np.zeros(1), width=16, n_o=20)  # shift left by 20
    assert R.run_int(g, np.array([[1]])).tolist() == [[32767]]  # 1 << 20 saturates, no overflow
    with pytest.raises(R.AccumulatorOverflow, match="'fc'"):
        R.run_int(g, np.array([[4096]]))  # 4096 << 20 = 2**32


def test_requantization_shift_of_32_bits_or_more_is_rejected() -> None:
    g = _dense_graph(np.array([[1]]), np.zeros(1), width=16, n_o=-32)  # accumulator frac 0 -> shift 32
    with pytest.raises(GraphError, match=r"'fc'.*requantization shift of 32 bits"):
        R.run_int(g, np.array([[1]]))


# ---------------------------------------------------------------- agreement with float execution
def _layer_error_bound(q: Graph, node: Node, x_abs_sum: np.ndarray, w_abs_sum: np.ndarray, terms: int,
                       e_in: float) -> float:
    """Worst error of one requantized layer output given its input's error ``e_in``."""
    e_w = 2.0 ** -q.node(node.name).formats["kernel"].frac
    e_b = 2.0 ** -node.formats["bias"].frac
    e_o = 2.0 ** -node.formats["output"].frac
    return float(np.max(w_abs_sum * e_in + x_abs_sum * e_w) + terms * e_in * e_w + e_b + 2 * e_o)


@settings(max_examples=30, deadline=None)
@given(
    width=st.integers(8, 16),
    granularity=st.sampled_from(["layer", "network"]),
    seed=st.integers(0, 2**32 - 1),
    features=st.integers(1, 8),
    units=st.integers(1, 6),
    scale=st.floats(0.05, 8.0),
)
def test_quantized_dense_add_stays_within_the_format_bound(width, granularity, seed, features, units,
                                                          scale) -> None:
    """Input -> Dense a, Dense b -> Add: |deq(int result) - float64 result| <= error bound of the formats."""
    rng = np.random.default_rng(seed)
    wa, wb = (rng.normal(0, 1, (units, features)).astype(np.float32) for _ in range(2))
    ba, bb = (rng.normal(0, 1, units).astype(np.float32) for _ in range(2))
    g = Graph([Node("x", "Input", attrs={"shape": [features]}),
               Node("a", "Dense", ["x"], {}, {"kernel": wa, "bias": ba}),
               Node("b", "Dense", ["x"], {}, {"kernel": wb, "bias": bb}),
               Node("s", "Add", ["a", "b"])], "s")
    g.validate()
    x = (rng.normal(0, scale, (32, features))).astype(np.float32)
    q = quantize_ptq(g, x, width, granularity)
    e_x = 2.0 ** -q.input.formats["output"].frac
    bound = sum(
        _layer_error_bound(q, q.node(name), np.abs(x).sum(axis=1).max(), np.abs(w).sum(axis=1), features, e_x)
        for name, w in (("a", wa), ("b", wb))
    ) + 2 * 2.0 ** -q.node("s").formats["output"].frac
    exact = x.astype(np.float64) @ (wa + wb).T.astype(np.float64) + (ba + bb)
    err = np.abs(R.dequantize_output(q, R.run(q, x)) - exact).max()
    assert err <= bound


@settings(max_examples=25, deadline=None)
@given(width=st.integers(8, 16), seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 3),
       filters=st.integers(1, 4), kernel=st.integers(1, 5))
def test_quantized_conv1d_stays_within_the_format_bound(width, seed, channels, filters, kernel) -> None:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (filters, channels, kernel)).astype(np.float32)
    b = rng.normal(0, 0.5, filters).astype(np.float32)
    pad = [kernel // 2, kernel - 1 - kernel // 2]
    g = Graph([Node("x", "Input", attrs={"shape": [channels, 12]}),
               Node("c", "Conv1D", ["x"], {"stride": 1, "padding": pad}, {"kernel": w, "bias": b})], "c")
    g.validate()
    x = rng.normal(0, 2, (16, channels, 12)).astype(np.float32)
    q = quantize_ptq(g, x, width, "layer")
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0), pad])
    windows = np.lib.stride_tricks.sliding_window_view(xp, kernel, axis=2)  # (N, C, L, k)
    exact = np.einsum("nclk,fck->nfl", windows, w.astype(np.float64)) + b[None, :, None]
    x_abs_sum = np.abs(windows).sum(axis=(1, 3)).max()
    bound = _layer_error_bound(q, q.node("c"), x_abs_sum, np.abs(w).sum(axis=(1, 2)), channels * kernel,
                               2.0 ** -q.input.formats["output"].frac)
    assert np.abs(R.dequantize_output(q, R.run(q, x)) - exact).max() <= bound


# ---------------------------------------------------------------- public helpers
def _tiny_float_graph() -> Graph:
    g = Graph([Node("x", "Input", attrs={"shape": [3]}),
               Node("fc", "Dense", ["x"], {}, {"kernel": np.eye(3, dtype=np.float32) * [1, 2, 3],
                                               "bias": np.zeros(3, np.float32)}),
               Node("sm", "Softmax", ["fc"])], "sm")
    g.validate()
    return g


def test_predict_accuracy_and_softmax_in_float_and_integer() -> None:
    g = _tiny_float_graph()
    x = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 0, 0.1]], dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    probs = R.run(g, x)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    assert R.accuracy(g, x, y) == 1.0
    q = quantize_ptq(g, x, 12, "layer", quant_rounding="nearest")
    assert q.node("sm").formats["output"] == QFormat(12, 11)
    assert R.predict(q, x).tolist() == y.tolist()
    np.testing.assert_allclose(R.dequantize_output(q, R.run(q, x)), probs, atol=2 ** -8)
    np.testing.assert_array_equal(R.run(q, x), R.run_int(q, R.quantize_input(q, x)))


def test_batching_does_not_change_results() -> None:
    g = _tiny_float_graph()
    x = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    q = quantize_ptq(g, x, 8)
    np.testing.assert_array_equal(R.run(q, x, batch_size=7), R.run(q, x))
    np.testing.assert_array_equal(R.run(g, x, batch_size=7), R.run(g, x))
    assert R.run(q, x[:0]).shape == (0, 3)


def test_input_errors_name_the_problem() -> None:
    g = _tiny_float_graph()
    with pytest.raises(GraphError, match=r"shape \(2, 4\).*\(3,\)"):
        R.run(g, np.zeros((2, 4)))
    with pytest.raises(GraphError, match="float32 graph"):
        R.run_int(g, np.zeros((1, 3), dtype=np.int64))
    with pytest.raises(GraphError, match="labels"):
        R.accuracy(g, np.zeros((2, 3)), np.zeros(3))
    q = quantize_ptq(g, np.ones((2, 3), np.float32), 8)
    with pytest.raises(GraphError, match="integer inputs"):
        R.run_int(q, np.zeros((1, 3)))
    with pytest.raises(GraphError, match="8-bit range"):
        R.run_int(q, np.full((1, 3), 300))


def test_integer_graph_rejects_batchnorm_and_format_changing_pass_through() -> None:
    fmt = QFormat(8, 4)
    bn = {k: np.ones(2, np.int32) for k in ("mean", "var", "gamma", "beta")}
    g = quantized_graph([Node("x", "Input", attrs={"shape": [2, 4]}, formats={"output": fmt}),
                         Node("bn", "BatchNorm", ["x"], {"eps": 1e-5}, bn, formats={"output": fmt})], 8)
    with pytest.raises(GraphError, match="batchnorm_to_scale"):
        R.run_int(g, np.zeros((1, 2, 4), dtype=np.int64))
    pool = Node("p", "MaxPool1D", ["x"], {"pool_size": 2}, formats={"output": QFormat(8, 3)})
    g = quantized_graph([Node("x", "Input", attrs={"shape": [2, 4]}, formats={"output": fmt}), pool], 8)
    with pytest.raises(GraphError, match="'p'.*keep the input format"):
        R.run_int(g, np.zeros((1, 2, 4), dtype=np.int64))


def test_run_all_exposes_every_layer_and_ends_with_the_output() -> None:
    g = _tiny_float_graph()
    x = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    q = quantize_ptq(g, x, 10)
    for graph in (g, q):
        values = R.run_all(graph, x)
        assert list(values) == [n.name for n in graph.nodes]
        np.testing.assert_array_equal(values[graph.output], R.run(graph, x))
    np.testing.assert_array_equal(R.run_all(q, R.quantize_input(q, x))["fc"], R.run_all(q, x)["fc"])
