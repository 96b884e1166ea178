"""Keras <-> graph IR: outputs against the reference executor, round trips, user models, errors, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from codegen.__main__ import main as codegen_main
from codegen.host import check_against_reference
from microai.graph.ir import Graph, GraphError, Node
from microai.graph.keras_io import from_keras, load_keras, to_keras
from microai.graph.torch_import import from_torch
from microai.models import build_model
from microai.quant import reference as R
from microai.tflite.tf_env import keras

K = keras()
L = K.layers


# ----------------------------------------------------------------------------- helpers
def assert_same_graph(a: Graph, b: Graph) -> None:
    """Same DAG: nodes by name with the same operator, inputs, attributes, shape and weights, and
    the same output (the topological order may differ: Keras orders layers by depth)."""
    assert b.output == a.output
    assert sorted(n.name for n in b.nodes) == sorted(n.name for n in a.nodes)
    for n in a.nodes:
        m = b.node(n.name)
        assert (m.op, m.inputs, m.attrs, m.shape) == (n.op, n.inputs, n.attrs, n.shape), n.name
        assert m.weights.keys() == n.weights.keys(), n.name
        for k, w in n.weights.items():
            np.testing.assert_array_equal(m.weights[k], w, err_msg=f"{n.name}/{k}")


def keras_run(model, x_channels_first: np.ndarray) -> np.ndarray:
    x = x_channels_first if x_channels_first.ndim == 2 else np.moveaxis(x_channels_first, 1, -1)
    return np.asarray(model.predict(x, batch_size=512, verbose=0))


def assert_keras_equals_reference(graph: Graph, model, x: np.ndarray, tol: float = 1e-5) -> None:
    ref = R.run(graph, x)
    got = keras_run(model, x)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() <= tol * max(1.0, float(np.abs(ref).max()))


def randomize_batchnorm(model, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.normal(1, 0.3, n), rng.normal(0, 0.3, n), rng.normal(0, 0.5, n),
                               rng.uniform(0.5, 1.5, n)])


def resnet_graph(shape: tuple[int, ...], classes: int = 6, filters: int = 16) -> Graph:
    torch.manual_seed(0)
    return from_torch(build_model("resnetv1-6", shape, classes, filters).eval(), shape)


# ------------------------------------------------------------- IR -> Keras: the pipeline's ResNetv1-6
def test_resnetv1_6_1d_keras_equals_reference_on_the_whole_test_set(synthetic_har) -> None:
    graph = resnet_graph(synthetic_har.input_shape)
    model = to_keras(graph)
    x = synthetic_har.x_test
    assert len(x) == 2947
    assert np.abs(keras_run(model, x) - R.run(graph, x)).max() <= 1e-5
    assert_same_graph(graph, from_keras(model))


def test_resnetv1_6_2d_keras_equals_reference_and_round_trips() -> None:
    graph = resnet_graph((3, 32, 32), classes=43)
    model = to_keras(graph)
    x = np.random.default_rng(1).normal(size=(1000, 3, 32, 32)).astype(np.float32)
    assert np.abs(keras_run(model, x) - R.run(graph, x)).max() <= 1e-5
    assert [type(la).__name__ for la in model.layers].count("Conv2D") == 6
    assert_same_graph(graph, from_keras(model))


def test_round_trip_through_keras_and_h5_files(tmp_path: Path) -> None:
    graph = resnet_graph((9, 128), filters=8)
    model = to_keras(graph)
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"resnet{suffix}"
        model.save(path)
        loaded = load_keras(path)
        assert_same_graph(graph, loaded)
        assert loaded.metadata["source"] == "keras" and loaded.metadata["name"] == "resnet"


def _hand_graph() -> Graph:
    """Operators and layouts the pipeline's models do not use: asymmetric and strided padding, a
    Flatten of several positions feeding BatchNorm and Dense, a Scale, a Flatten reaching the output."""
    rng = np.random.default_rng(3)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.5, shape).astype(np.float32)

    nodes = [
        Node("x", "Input", attrs={"shape": [2, 12]}),
        Node("conv", "Conv1D", ["x"], {"stride": 2, "padding": [2, 0]}, {"kernel": w(3, 2, 3), "bias": w(3)}),
        Node("scale", "Scale", ["conv"], weights={"scale": w(3), "bias": w(3)}),
        Node("relu", "ReLU", ["scale"]),
        Node("pad", "ZeroPadding1D", ["relu"], {"padding": [1, 2]}),
        Node("avg", "AvgPool1D", ["pad"], {"pool_size": 2, "stride": 2}),
        Node("flat", "Flatten", ["avg"]),
        Node("bn", "BatchNorm", ["flat"], {"eps": 1e-3},
             {"mean": w(12), "var": np.abs(w(12)) + 0.5, "gamma": w(12), "beta": w(12)}),
        Node("fc", "Dense", ["bn"], weights={"kernel": w(5, 12), "bias": w(5)}),
        Node("soft", "Softmax", ["fc"]),
    ]
    g = Graph(nodes, "soft", metadata={"name": "hand"})
    g.validate()
    return g


def test_hand_made_graph_keeps_weight_order_and_round_trips() -> None:
    graph = _hand_graph()
    model = to_keras(graph)
    names = [la.name for la in model.layers]
    assert "conv_pad" in names and "flat_channels_first" not in names  # the flatten order goes into fc
    x = np.random.default_rng(4).normal(size=(64, 2, 12)).astype(np.float32)
    assert_keras_equals_reference(graph, model, x)
    assert_same_graph(graph, from_keras(model))


def test_flatten_reaching_the_output_is_flattened_channels_first() -> None:
    rng = np.random.default_rng(5)
    nodes = [Node("x", "Input", attrs={"shape": [3, 6, 5]}),
             Node("conv", "Conv2D", ["x"], {"stride": [1, 2], "padding": [1, 0, 0, 1]},
                  {"kernel": rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
                   "bias": np.ones(4, np.float32)}),
             Node("flat", "Flatten", ["conv"]),
             Node("relu", "ReLU", ["flat"])]
    graph = Graph(nodes, "relu")
    graph.validate()
    model = to_keras(graph)
    assert "flat_channels_first" in [la.name for la in model.layers]
    assert_keras_equals_reference(graph, model, rng.normal(size=(16, 3, 6, 5)).astype(np.float32))
    assert_same_graph(graph, from_keras(model))


def test_torch_fx_names_become_valid_tensorflow_names_and_come_back() -> None:
    torch.manual_seed(0)
    graph = from_torch(build_model("mlp", (3, 8, 8), 4, 8).eval(), (3, 8, 8))
    assert any(n.name.startswith("_") for n in graph.nodes)  # nn.Sequential indices: '_1', '_2' ...
    model = to_keras(graph)
    assert all(la.name[0].isalnum() or la.name[0] == "." for la in model.layers)
    assert_same_graph(graph, from_keras(model))


def test_quantized_graph_is_refused() -> None:
    graph = resnet_graph((9, 128), filters=4)
    graph.precision = "int8"
    with pytest.raises(GraphError, match="float32 graph"):
        to_keras(graph)


# ------------------------------------------------------------- Keras -> IR: models the pipeline never made
def branchy_functional():
    """A functional 2D model with two branches: strided 'same' conv + BatchNorm, pooled 1x1 conv."""
    inp = K.Input((20, 20, 3), name="image")
    a = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="a_conv")(inp)
    a = L.BatchNormalization(name="a_bn")(a)
    a = L.ReLU(name="a_relu")(a)
    b = L.AveragePooling2D(2, name="b_pool")(inp)
    b = L.Conv2D(8, 1, activation="relu", name="b_conv")(b)
    h = L.Add(name="merge")([a, b])
    h = L.Conv2D(6, 3, name="head_conv")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    out = L.Dense(5, activation="softmax", name="probs")(L.Dropout(0.3)(h))
    return K.Model(inp, out, name="branchy")


def sequential_1d():
    """Causal and strided 'same' Conv1D, BatchNorm, an explicit ZeroPadding1D, a Flatten of several
    positions into Dense, Activation layers."""
    return K.Sequential([
        K.Input((50, 4)),
        L.Conv1D(6, 5, padding="causal"),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.MaxPooling1D(2),
        L.Conv1D(8, 3, strides=2, padding="same"),
        L.ZeroPadding1D((2, 1)),
        L.Conv1D(4, 3, activation="relu"),
        L.Flatten(),
        L.Dense(10),
        L.BatchNormalization(),
        L.ReLU(),
        L.Dense(3),
        L.Activation("softmax"),
    ], name="seq1d")


def sequential_2d():
    """An even 'same' kernel (asymmetric padding), strided pooling, Flatten -> BatchNorm -> Dense."""
    return K.Sequential([
        K.Input((9, 7, 2)),
        L.Conv2D(4, (3, 2), padding="same"),
        L.MaxPooling2D((2, 2), strides=(2, 1)),
        L.Flatten(),
        L.BatchNormalization(),
        L.ReLU(),
        L.Dense(5),
        L.Softmax(),
    ], name="seq2d")


def reshapes_1d():
    """Flatten(data_format='channels_first'), Reshape to a vector and Permute + Flatten, GlobalMaxPooling."""
    inp = K.Input((16, 3))
    h = L.Conv1D(4, 3, padding="same")(inp)
    a = L.Dense(2)(L.Flatten(data_format="channels_first")(h))
    b = L.Dense(2)(L.Reshape((-1,))(h))
    c = L.Flatten()(L.Permute((2, 1))(h))
    d = L.Dense(2)(L.GlobalMaxPooling1D()(L.Identity()(h)))
    return K.Model(inp, [a, b, c, d], name="reshapes")


@pytest.mark.parametrize("make", [branchy_functional, sequential_1d, sequential_2d])
def test_foreign_keras_models_import_exactly_and_round_trip(make) -> None:
    K.utils.set_random_seed(0)
    model = make()
    randomize_batchnorm(model)
    graph = from_keras(model)
    x = np.random.default_rng(0).normal(size=(128, *graph.input.shape)).astype(np.float32)
    assert_keras_equals_reference(graph, model, x)
    assert_same_graph(graph, from_keras(to_keras(graph)))


def test_foreign_model_ops_and_attributes() -> None:
    K.utils.set_random_seed(0)
    g = from_keras(sequential_1d())
    ops = [n.op for n in g.nodes]
    assert ops.count("BatchNorm") == 2 and ops.count("ZeroPadding1D") == 1 and ops[-1] == "Softmax"
    first_conv = next(n for n in g.nodes if n.op == "Conv1D")
    assert first_conv.attrs == {"stride": 1, "padding": [4, 0]}  # causal: k - 1 zeros on the left
    assert g.node(g.nodes[1].name).op == "Conv1D" and g.input.shape == (4, 50)
    g2 = from_keras(branchy_functional())
    assert g2.node("a_conv").attrs == {"stride": [2, 2], "padding": [0, 1, 0, 1]}  # TF's 'same'
    assert g2.node("b_conv_relu").op == "ReLU" and g2.node("gap").op == "Flatten"
    assert g2.node("gap_pool").attrs == {"pool_size": [8, 8], "stride": [8, 8]}
    assert not g2.node("a_conv").weights["bias"].any()


@pytest.mark.parametrize("output", range(4))
def test_flatten_orders_of_reshape_permute_and_channels_first(output: int) -> None:
    K.utils.set_random_seed(1)
    full = reshapes_1d()
    model = K.Model(full.inputs, full.outputs[output])
    graph = from_keras(model)
    assert_keras_equals_reference(graph, model, np.random.default_rng(2).normal(size=(32, 3, 16))
                                  .astype(np.float32))


# ------------------------------------------------------------- errors name the layer and its class
def _functional(build, shape=(12, 3)):
    inp = K.Input(shape)
    return K.Model(inp, build(inp), name="user")


class MyConv(L.Conv1D):
    pass


@pytest.mark.parametrize(("build", "message"), [
    (lambda x: L.LSTM(4, name="rnn")(x), r"layer 'rnn' \(LSTM\): unsupported layer class LSTM"),
    (lambda x: L.Conv1D(2, 3, dilation_rate=2, name="dil")(x), r"'dil' \(Conv1D\): unsupported dilation"),
    (lambda x: L.Activation("tanh", name="act")(x), r"'act' \(Activation\): unsupported Activation\('tanh"),
    (lambda x: L.Conv1D(2, 3, activation="sigmoid", name="c")(x), r"'c' \(Conv1D\): unsupported activation"),
    (lambda x: L.Concatenate(name="cat")([x, x]), r"'cat' \(Concatenate\)"),
    (lambda x: L.MaxPooling1D(5, padding="same", name="mp")(x), r"'mp' \(MaxPooling1D\): unsupported pad"),
    (lambda x: L.Dense(2, name="fc")(x), r"'fc' \(Dense\): unsupported Dense on a tensor of shape \(12, 3\)"),
    (lambda x: L.ReLU(max_value=6.0, name="r6")(x), r"'r6' \(ReLU\): unsupported ReLU\(max_value=6.0"),
    (lambda x: L.Flatten(name="f")(x), r"'f' \(Flatten\): unsupported model output in Keras' channels-last"),
    (lambda x: MyConv(2, 3, name="mine")(x), r"'mine' \(MyConv\): unsupported layer class MyConv"),
])
def test_unsupported_layers_name_the_layer_and_class(build, message: str) -> None:
    with pytest.raises(GraphError, match=message):
        from_keras(_functional(build))


def test_unbuilt_or_multi_input_models_are_refused() -> None:
    with pytest.raises(GraphError, match="no defined inputs"):
        from_keras(K.Sequential([L.Dense(2)], name="unbuilt"))
    a, b = K.Input((3,)), K.Input((3,))
    with pytest.raises(GraphError, match="2 inputs and 1 outputs"):
        from_keras(K.Model([a, b], L.Add()([a, b]), name="two"))


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"model\.onnx: not a Keras model file"):
        load_keras(tmp_path / "model.onnx")
    with pytest.raises(GraphError, match=r"absent\.keras: no such Keras model file"):
        load_keras(tmp_path / "absent.keras")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(GraphError, match=r"junk\.h5: cannot load the Keras model"):
        load_keras(junk)


# ----------------------------------------------------------------------------- python -m codegen model.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_codegen_cli_takes_keras_models(tmp_path: Path, suffix: str) -> None:
    K.utils.set_random_seed(0)
    model = branchy_functional()
    randomize_batchnorm(model)
    path = tmp_path / f"branchy{suffix}"
    model.save(path)
    out = tmp_path / "c"
    assert codegen_main([str(path), "-o", str(out)]) == 0
    assert (out / "model.c").is_file()
    x = np.random.default_rng(0).normal(size=(50, 3, 20, 20)).astype(np.float32)
    check = check_against_reference(load_keras(path), out, x)
    assert check["matches"] == 1.0
    assert np.abs(keras_run(model, x) - R.run(load_keras(path), x)).max() <= 1e-5


def test_codegen_cli_reports_a_bad_keras_model(tmp_path: Path, capsys) -> None:
    path = tmp_path / "rnn.keras"
    _functional(lambda x: L.LSTM(4, name="rnn")(x)).save(path)
    assert codegen_main([str(path), "-o", str(tmp_path / "c")]) == 1
    assert "rnn.keras" in capsys.readouterr().err and not (tmp_path / "c").exists()
