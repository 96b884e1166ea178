"""TFLite models of the pipeline's graphs and TFLite Micro (TFLM) as a peer framework.

- ``microai.tflite.runtime``: the PyPI ``tflite-micro`` host runtime (no TensorFlow needed): runs a
  ``.tflite`` model, quantizes its inputs, reports its arena and operators. It is the bit-exact
  reference for TFLM outputs, on the host and on boards.
- ``microai.tflite.convert``: graph IR -> Keras -> ``.tflite`` with TensorFlow's converter (float32,
  and int8 by TFLite's post-training quantization). Imports TensorFlow (seconds) on first use.
- ``microai.tflite.tree``: where the user's TFLM source tree is (``frameworks.tflite-micro.source``
  or ``MICROAI_TFLM_TREE``).
"""
