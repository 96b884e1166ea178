""".tflite int8 / 16x8 models -> graph IR (tflite scheme) -> reference executor and generated C, bit for bit
against the TFLM host runtime: the pipeline's own ResNetv1-6 and Keras models the pipeline did not make."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_deploy_support import needs_qemu

from codegen import load_report
from codegen.host import run_host
from microai.graph.ir import AffineFormat, Graph, GraphError
from microai.quant import reference as R
from microai.tflite import runtime
from microai.tflite.convert import representative_samples, to_tflite
from microai.tflite.engine import check_c_against_tflm
from microai.tflite.importer import from_tflite

ROOT = Path(__file__).resolve().parent.parent


def convert_keras(model, calibration: np.ndarray, int16: bool = False) -> bytes:
    """TensorFlow's own full-integer conversion of a Keras model (not MicroAI's path)."""
    from microai.tflite import tf_env

    tf = tf_env.tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in calibration)
    ops = tf.lite.OpsSet
    wide = ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    converter.target_spec.supported_ops = [wide if int16 else ops.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int16 if int16 else tf.int8
    return bytes(converter.convert())


def cnn2d(softmax: bool = True):
    """Conv2D 'same' stride 2 + ReLU, DepthwiseConv2D (multiplier 2) + ReLU6, 1x1 Conv2D, Add, padded
    AveragePooling2D and MaxPooling2D, ZeroPadding2D, Conv2D 'valid', GlobalAveragePooling2D (MEAN), Dense."""
    from microai.tflite import tf_env

    keras = tf_env.keras()
    keras.utils.set_random_seed(1)
    layers = keras.layers
    i = keras.Input((20, 20, 3), batch_size=1)
    h = layers.Conv2D(8, 3, padding="same", strides=2, activation="relu")(i)
    h = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu6")(h)
    h = layers.Add()([h, layers.Conv2D(16, 1)(h)])
    h = layers.AveragePooling2D(3, strides=2, padding="same")(h)
    h = layers.MaxPooling2D(3, strides=2, padding="same")(h)
    h = layers.ZeroPadding2D(((1, 0), (2, 1)))(h)
    h = layers.Conv2D(12, 2)(h)
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(i, layers.Dense(5, activation="softmax" if softmax else None)(h))


def cnn1d():
    """Conv1D 'same' + ReLU, MaxPooling1D, strided Conv1D 'valid', Flatten (channels-last), Dense."""
    from microai.tflite import tf_env

    keras = tf_env.keras()
    keras.utils.set_random_seed(2)
    layers = keras.layers
    i = keras.Input((30, 5), batch_size=1)
    h = layers.Conv1D(8, 5, padding="same", activation="relu")(i)
    h = layers.MaxPooling1D(2)(h)
    h = layers.Conv1D(6, 3, strides=2)(h)
    return keras.Model(i, layers.Dense(4)(layers.Flatten()(h)))


@pytest.fixture(scope="module")
def models(synthetic_har) -> dict[str, tuple[bytes, np.ndarray]]:
    """name -> (.tflite bytes, channels-first test inputs)."""
    import torch

    from microai.graph.torch_import import from_torch
    from microai.models import build_model

    rng = np.random.default_rng(0)
    x2d = rng.normal(0, 1, (300, 3, 20, 20)).astype(np.float32) * 1.5
    x1d = rng.normal(0, 1, (300, 5, 30)).astype(np.float32)
    cl2d, cl1d = np.moveaxis(x2d[:100], 1, -1), np.moveaxis(x1d[:100], 1, -1)
    torch.manual_seed(0)
    data = synthetic_har
    net = build_model("resnetv1-6", data.input_shape, data.num_classes, 8).eval()
    resnet = from_torch(net, data.input_shape)
    return {
        "pipeline-resnet1d": (to_tflite(resnet, "int8", representative_samples(data.x_train, 300)),
                              data.x_test[:1000]),
        "keras-cnn2d": (convert_keras(cnn2d(), cl2d), x2d),
        "keras-cnn1d": (convert_keras(cnn1d(), cl1d), x1d),
        "keras-cnn2d-16x8": (convert_keras(cnn2d(softmax=False), cl2d, int16=True), x2d),
    }


@pytest.mark.parametrize("name", ["pipeline-resnet1d", "keras-cnn2d", "keras-cnn1d", "keras-cnn2d-16x8"])
def test_reference_executor_reproduces_tflm(models, name: str) -> None:
    tflite, x = models[name]
    graph = from_tflite(tflite, name)
    tflm = runtime.run_tflm(tflite, x)
    assert graph.scheme == "tflite" and graph.precision == ("int16x8" if "16x8" in name else "int8")
    np.testing.assert_array_equal(R.run(graph, x).reshape(len(x), -1), tflm.outputs.reshape(len(x), -1))


@pytest.mark.parametrize("kernels", ["reference", "optimized"])
@pytest.mark.parametrize("name", ["pipeline-resnet1d", "keras-cnn2d", "keras-cnn1d", "keras-cnn2d-16x8"])
def test_generated_c_reproduces_tflm_on_every_vector(models, name: str, kernels: str) -> None:
    tflite, x = models[name]
    check = check_c_against_tflm(tflite, x, kernels=kernels)
    assert check["vectors"] == len(x) and check["mismatched_vectors"] == 0 and check["matches"] == 1.0


def test_the_input_is_quantized_as_the_tflm_runtime_feeds_it(models) -> None:
    tflite, x = models["keras-cnn2d"]
    graph = from_tflite(tflite)
    fed = runtime.run_tflm(tflite, x[:20]).inputs
    np.testing.assert_array_equal(R.quantize_input(graph, x[:20]), np.moveaxis(fed, -1, 1))


def test_1d_models_import_as_1d_operators_and_flatten_folds_into_the_dense(models) -> None:
    graph = from_tflite(models["keras-cnn1d"][0])
    assert [n.op for n in graph.nodes] == ["Input", "Conv1D", "MaxPool1D", "Conv1D", "Flatten", "Dense"]
    assert graph.input.shape == (5, 30) and graph.metadata["operators"][0] == "RESHAPE"
    resnet = from_tflite(models["pipeline-resnet1d"][0])
    assert {n.op for n in resnet.nodes} <= {"Input", "Conv1D", "MaxPool1D", "Add", "Flatten", "Dense"}


def test_formats_are_tflite_s_quantization(models) -> None:
    graph = from_tflite(models["keras-cnn2d"][0])
    conv = next(n for n in graph.nodes if n.op == "Conv2D")
    assert isinstance(conv.formats["output"], AffineFormat) and conv.formats["kernel"].per_channel
    assert conv.formats["bias"].width == 32 and conv.weights["kernel"].dtype == np.int32
    assert graph.node(graph.output).formats["output"] == AffineFormat.per_tensor(8, 1 / 256, -128)
    wide = from_tflite(models["keras-cnn2d-16x8"][0])
    assert {n.formats["output"].width for n in wide.nodes} == {16}
    assert {n.formats["bias"].width for n in wide.nodes if "bias" in n.formats} == {64}


def test_imported_graph_saves_and_loads_unchanged(models, tmp_path: Path) -> None:
    graph = from_tflite(models["keras-cnn2d"][0])
    graph.save(tmp_path / "g")
    back = Graph.load(tmp_path / "g")
    assert back.scheme == "tflite" and [n.formats for n in back.nodes] == [n.formats for n in graph.nodes]
    x = models["keras-cnn2d"][1][:50]
    np.testing.assert_array_equal(R.run(back, x), R.run(graph, x))


def test_cli_generates_c_from_a_tflite_file(models, tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(models["keras-cnn1d"][0])
    proc = subprocess.run([sys.executable, "-m", "codegen", str(path), "-o", str(tmp_path / "c")],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    report = load_report(tmp_path / "c")
    assert report["precision"] == "int8" and report["input_ctype"] == "int8_t"
    x = models["keras-cnn1d"][1][:30]
    graph = from_tflite(path)
    np.testing.assert_array_equal(run_host(graph, tmp_path / "c", x).reshape(30, -1),
                                  runtime.run_tflm(path, x).outputs.reshape(30, -1))


def test_an_unsupported_operator_is_named_with_its_index(tmp_path: Path) -> None:
    from microai.tflite import tf_env

    keras = tf_env.keras()
    i = keras.Input((6,), batch_size=1)
    h = keras.layers.Dense(4)(i)
    model = keras.Model(i, keras.layers.Concatenate()([h, keras.layers.Dense(3, activation="tanh")(i)]))
    tflite = convert_keras(model, np.random.default_rng(0).normal(0, 1, (20, 6)).astype(np.float32))
    path = tmp_path / "bad.tflite"
    path.write_bytes(tflite)
    names = runtime.operators(path)
    bad = next(k for k, op in enumerate(names) if op not in ("FULLY_CONNECTED",))
    message = rf"{path}: operator {bad} \({names[bad]}\): operator {names[bad]} is not supported .*CONV_2D"
    with pytest.raises(GraphError, match=message):
        from_tflite(path)
    proc = subprocess.run([sys.executable, "-m", "codegen", str(path), "-o", str(tmp_path / "c")],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 1 and f"operator {bad} ({names[bad]})" in proc.stderr
    assert not (tmp_path / "c").exists()


def test_float_models_and_int16_softmax_are_refused_by_name(models, har_float_tflite) -> None:
    with pytest.raises(GraphError, match="not float ones"):
        from_tflite(har_float_tflite)
    tflite = convert_keras(cnn2d(), np.moveaxis(models["keras-cnn2d"][1][:20], 1, -1), int16=True)
    with pytest.raises(GraphError, match=r"operator \d+ \(SOFTMAX\): int16 SOFTMAX is not supported"):
        from_tflite(tflite)
    with pytest.raises(GraphError, match="not a TFLite flatbuffer"):
        from_tflite(b"TFL3 but not one")


@pytest.fixture(scope="module")
def har_float_tflite(synthetic_har) -> bytes:
    import torch

    from microai.graph.torch_import import from_torch
    from microai.models import build_model

    torch.manual_seed(0)
    shape = synthetic_har.input_shape
    return to_tflite(from_torch(build_model("resnetv1-6", shape, 6, 4).eval(), shape), "float32")


@needs_qemu
@pytest.mark.slow
@pytest.mark.parametrize("name", ["pipeline-resnet1d", "keras-cnn2d", "keras-cnn2d-16x8"])
def test_generated_c_on_qemu_m4_reproduces_tflm(models, name: str, tmp_path: Path) -> None:
    """The optimized kernels' Cortex-M4 paths (SMLAD blocks, SXTB16/SSUB16 depthwise, the split
    requantization), which the host build does not compile, bit for bit on the emulated board."""
    import codegen
    from microai.deploy.boards import get_board

    tflite, x = models[name]
    x = x[:12]
    graph = from_tflite(tflite, name)
    codegen.convert(graph, tmp_path / "lib", kernels="optimized")
    board = get_board("qemu-m4")
    build = board.build(tmp_path / "lib", codegen.pack_input(graph, x), tmp_path / "build")
    run = board.run(build, timeout=300)
    np.testing.assert_array_equal(run.outputs.reshape(len(x), -1),
                                  runtime.run_tflm(tflite, x).outputs.reshape(len(x), -1))
