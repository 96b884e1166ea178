"""Graph IR -> .tflite (float32, int8 PTQ) and the TFLM host runtime: operators, determinism, outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from microai.graph.ir import Graph, GraphError
from microai.graph.torch_import import from_torch
from microai.models import build_model
from microai.quant import reference as R
from microai.quant.compare import matching_vectors
from microai.tflite import runtime
from microai.tflite.convert import representative_samples, to_tflite

ROOT = Path(__file__).resolve().parent.parent
#: What the converter may emit for the pipeline's ResNetv1-6 (1D also: one RESHAPE of the input).
RESNET_OPS = {"CONV_2D", "MAX_POOL_2D", "ADD", "FULLY_CONNECTED"}


def resnet(shape: tuple[int, ...], classes: int, filters: int) -> Graph:
    torch.manual_seed(0)
    return from_torch(build_model("resnetv1-6", shape, classes, filters).eval(), shape)


@pytest.fixture(scope="module")
def har(synthetic_har):
    """ResNetv1-6 (F=16) for UCI-HAR's shape, its representative inputs and both .tflite models."""
    graph = resnet(synthetic_har.input_shape, synthetic_har.num_classes, 16)
    samples = representative_samples(synthetic_har.x_train, 500)
    models = {p: to_tflite(graph, p, samples) for p in ("float32", "int8")}
    return graph, samples, models, synthetic_har


def test_batch_one_models_have_no_reshape_around_convolutions(har) -> None:
    *_, models, _ = har
    for precision, model in models.items():
        ops = runtime.operators(model)
        assert ops[0] == "RESHAPE" and set(ops[1:]) == RESNET_OPS, (precision, ops)
        assert ops.count("CONV_2D") == 6 and ops.count("FULLY_CONNECTED") == 1
    image = resnet((3, 16, 16), 10, 4)
    x = np.random.default_rng(0).normal(size=(50, 3, 16, 16)).astype(np.float32)
    assert set(runtime.operators(to_tflite(image, "int8", x))) == RESNET_OPS


def test_other_pipeline_models_convert_and_match_the_reference() -> None:
    """A CNN whose Flatten keeps several positions (its order goes into the Dense kernel) and an MLP
    whose torch.fx names ('_1', ...) are not valid TensorFlow names."""
    x = np.random.default_rng(0).normal(size=(64, 9, 32)).astype(np.float32)
    for name in ("cnn", "mlp"):
        torch.manual_seed(0)
        graph = from_torch(build_model(name, (9, 32), 5, 8).eval(), (9, 32))
        run = runtime.run_tflm(to_tflite(graph, "float32"), x)
        assert matching_vectors(graph, run.outputs, R.run(graph, x)).all(), name


def test_int8_model_is_full_integer_with_batch_one_io(har) -> None:
    *_, models, _ = har
    inp, out = runtime.tensor_specs(models["int8"])
    assert inp.shape == (1, 128, 9) and out.shape == (1, 6)
    assert inp.dtype == out.dtype == np.int8 and inp.quantized and out.quantized
    finp, fout = runtime.tensor_specs(models["float32"])
    assert finp.dtype == np.float32 and not finp.quantized and fout.shape == (1, 6)


def test_conversion_gives_the_same_bytes_again_and_with_other_thread_counts(har, tmp_path: Path) -> None:
    graph, samples, models, _ = har
    assert to_tflite(graph, "int8", samples) == models["int8"]
    graph.save(tmp_path / "g")
    np.save(tmp_path / "samples.npy", samples)
    script = (
        "import sys, numpy as np\n"
        "from microai.graph import Graph\n"
        "from microai.tflite.convert import to_tflite\n"
        "d = sys.argv[1]\n"
        "g, s = Graph.load(d + '/g'), np.load(d + '/samples.npy')\n"
        "for p in ('float32', 'int8'):\n"
        "    open(f'{d}/{p}.tflite', 'wb').write(to_tflite(g, p, s, threads=2))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=ROOT, capture_output=True)
    for precision, model in models.items():
        assert (tmp_path / f"{precision}.tflite").read_bytes() == model, precision


def test_float_model_in_tflm_equals_the_reference_on_the_whole_test_set(har) -> None:
    graph, _, models, data = har
    run = runtime.run_tflm(models["float32"], data.x_test)
    assert run.outputs.shape == (2947, 6) and run.outputs.dtype == np.float32
    assert matching_vectors(graph, run.outputs, R.run(graph, data.x_test)).all()
    np.testing.assert_array_equal(run.inputs, np.moveaxis(data.x_test, 1, -1))


def test_int8_model_in_tflm_follows_the_float_model(har) -> None:
    graph, _, models, data = har
    run = runtime.run_tflm(models["int8"], data.x_test)
    assert run.outputs.dtype == np.int8 and run.inputs.dtype == np.int8
    np.testing.assert_array_equal(run.inputs, runtime.quantize_input(models["int8"], data.x_test))
    ref = R.run(graph, data.x_test)
    assert np.mean(runtime.predict(run) == ref.argmax(axis=1)) > 0.97
    error = np.abs(runtime.dequantize(run.output, run.outputs) - ref)
    assert np.median(error) < 4 * run.output.scale


def test_model_layout_inputs_and_paths_give_the_same_run(har, tmp_path: Path) -> None:
    *_, models, data = har
    path = tmp_path / "int8.tflite"
    path.write_bytes(models["int8"])
    x = data.x_test[:20]
    a = runtime.run_tflm(models["int8"], x)
    b = runtime.run_tflm(path, np.moveaxis(x, 1, -1), channels_first=False)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    np.testing.assert_array_equal(a.inputs, b.inputs)


def test_quantize_rounds_half_away_from_zero_and_saturates() -> None:
    spec = runtime.TensorSpec((1, 6), np.dtype(np.int8), 0.5, 3)
    x = np.array([[-0.25, 0.25, 0.75, -0.75, 100.0, -100.0]], dtype=np.float32)
    np.testing.assert_array_equal(runtime.quantize(spec, x), [[2, 4, 5, 1, 127, -128]])
    np.testing.assert_allclose(runtime.dequantize(spec, np.array([3, 5])), [0.0, 1.0])


def test_arena_report(har) -> None:
    *_, models, _ = har
    f, q = runtime.arena_bytes(models["float32"]), runtime.arena_bytes(models["int8"])
    assert f.total == f.head + f.tail and q.total == q.head + q.tail
    assert 0 < q.head < f.head  # int8 activations take a quarter of float32's bytes
    assert runtime.arena_bytes(models["int8"]) == q


def test_runtime_errors_name_the_model(har, tmp_path: Path) -> None:
    *_, models, _ = har
    with pytest.raises(runtime.TFLMError, match=r"absent\.tflite: cannot read"):
        runtime.run_tflm(tmp_path / "absent.tflite", np.zeros((1, 9, 128)))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"0123456789")
    with pytest.raises(runtime.TFLMError, match=r"junk\.tflite: not a TFLite flatbuffer"):
        runtime.operators(junk)
    with pytest.raises(runtime.TFLMError, match=r"\(128, 9\)"):
        runtime.run_tflm(models["int8"], np.zeros((2, 9, 64), np.float32))


def test_conversion_arguments_are_checked(har) -> None:
    graph, samples, *_ = har
    with pytest.raises(ValueError, match="int16"):
        to_tflite(graph, "int16")
    with pytest.raises(ValueError, match="representative inputs"):
        to_tflite(graph, "int8")
    with pytest.raises(ValueError, match="do not match the graph input"):
        to_tflite(graph, "int8", samples[:, :, :64])
    q = graph.copy()
    q.precision = "int8"
    with pytest.raises(GraphError, match="float32 graph"):
        to_tflite(q)


def test_representative_samples_span_the_training_set() -> None:
    x = np.arange(10)[:, None]
    assert representative_samples(x, 4)[:, 0].tolist() == [0, 2, 5, 7]
    assert len(representative_samples(x, 50)) == 10
