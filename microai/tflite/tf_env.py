"""TensorFlow and Keras, imported on first use (seconds): quiet, deterministic, TensorFlow backend.

Only the stages that build Keras models or convert to TFLite call these; everything else in
MicroAI runs without TensorFlow.
"""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType

_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR lines of TensorFlow
    "TF_ENABLE_ONEDNN_OPTS": "0",  # oneDNN kernels round differently with the thread count
    "KERAS_BACKEND": "tensorflow",  # the TFLite converter needs Keras on TensorFlow
    "GRPC_VERBOSITY": "ERROR",
}


@cache
def tensorflow() -> ModuleType:
    """``import tensorflow`` with quiet logs and deterministic kernels (``enable_op_determinism``)."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)
    tf.config.experimental.enable_op_determinism()
    return tf


def set_threads(threads: int) -> None:
    """Size TensorFlow's intra- and inter-op thread pools (a stage's CPU share).

    Only possible before TensorFlow first runs in the process; later calls keep the pools it
    started with. Results do not depend on it: the conversion gives the same bytes with any
    thread count (tested).
    """
    tf = tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime is already initialised in this process
        pass


@cache
def keras() -> ModuleType:
    """``import keras`` (Keras 3) on the TensorFlow backend."""
    tensorflow()
    import keras as k

    if k.backend.backend() != "tensorflow":
        raise RuntimeError(f"Keras uses the '{k.backend.backend()}' backend; MicroAI needs 'tensorflow' "
                           "(set KERAS_BACKEND=tensorflow)")
    return k
