"""Graph IR -> Keras -> ``.tflite`` with TensorFlow's converter: float32, and full-integer int8 by
TFLite's post-training quantization (the paper's "TFLite PTQ" comparison point).

The Keras model has a batch-1 input, as TFLite Micro runs it: with a free batch dimension the
converter wraps every 1D convolution and pooling in EXPAND_DIMS/RESHAPE and computes the flatten
shape at run time (SHAPE, STRIDED_SLICE, PACK). With batch 1, a 1D ResNetv1-6 converts to one
RESHAPE of the input, then CONV_2D, MAX_POOL_2D, ADD and FULLY_CONNECTED only.

The conversion is deterministic: the same graph and representative data give the same bytes,
whatever the thread count (checked by the tests).
"""

from __future__ import annotations

import tempfile

import numpy as np

from microai.graph.ir import Graph
from microai.tflite.capture import StderrCapture

PRECISIONS = ("float32", "int8", "int16x8")


class ConversionError(RuntimeError):
    """The TFLite converter refused the model; the message quotes what it said."""


def representative_samples(x: np.ndarray, count: int) -> np.ndarray:
    """``count`` inputs evenly spaced over ``x`` (every input when there are fewer): a deterministic
    calibration set that spans a training set stored in any order."""
    if count < 1:
        raise ValueError(f"representative sample count must be >= 1, got {count}")
    n = len(x)
    return x if count >= n else x[(np.arange(count) * n) // count]


def to_tflite(graph: Graph, precision: str = "float32", representative: np.ndarray | None = None,
              threads: int = 1) -> bytes:
    """The ``.tflite`` flatbuffer of a float32 graph.

    ``precision="int8"``: full-integer post-training quantization (int8 kernels only, int8 input and
    output tensors), calibrated on ``representative`` (float inputs, channels-first like the
    graph, e.g. :func:`representative_samples` of the training set); ``"int16x8"``: TFLite's 16x8
    (int8 weights, int16 activations, int16 input and output). ``threads``: TensorFlow's
    thread pools (only settable before TensorFlow first runs in the process).
    """
    from microai.graph.keras_io import to_keras
    from microai.tflite import tf_env

    if precision not in PRECISIONS:
        raise ValueError(f"TFLite precision '{precision}' unknown; choose one of {PRECISIONS}")
    shape = graph.input.shape
    if precision != "float32":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs representative inputs (e.g. training samples)")
        if tuple(representative.shape[1:]) != tuple(shape):
            raise ValueError(f"representative inputs of shape {representative.shape[1:]} do not match the "
                             f"graph input {tuple(shape)} (channels first, batch first)")
        samples = np.asarray(representative, dtype=np.float32)
        if len(shape) > 1:
            samples = np.moveaxis(samples, 1, -1)  # channels last, as the Keras model takes them
    tf = tf_env.tensorflow()
    tf_env.set_threads(threads)
    model = to_keras(graph, batch_size=1)
    name = graph.metadata.get("name", "graph")
    with tempfile.TemporaryDirectory(prefix="microai-tflite-") as saved, StderrCapture() as said:
        try:
            signature = [tf.TensorSpec(model.inputs[0].shape, tf.float32)]  # keeps the batch of 1
            model.export(saved, format="tf_saved_model", verbose=False, input_signature=signature)
            converter = tf.lite.TFLiteConverter.from_saved_model(saved)
            if precision != "float32":
                ops = tf.lite.OpsSet
                wide = precision == "int16x8"
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = lambda: ([s[None]] for s in samples)
                converter.target_spec.supported_ops = [
                    ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if wide
                    else ops.TFLITE_BUILTINS_INT8]
                io_type = tf.int16 if wide else tf.int8
                converter.inference_input_type = converter.inference_output_type = io_type
            data = converter.convert()
        except Exception as e:  # the converter raises ConverterError, RuntimeError, ValueError ...
            error = e
        else:
            error = None
    if error is not None:
        raise ConversionError(f"graph '{name}': TFLite {precision} conversion failed: "
                              f"{type(error).__name__}: {error}\n{said.text.strip()[-3000:]}") from error
    return bytes(data)
