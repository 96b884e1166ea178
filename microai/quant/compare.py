"""When do a backend's outputs equal the reference executor's? (the contract of docs/arithmetic.md)"""

from __future__ import annotations

import numpy as np

from microai.graph import Graph

#: float32: tolerance relative to the largest output of the same vector (summation order in C
#: differs from numpy's, and the rounding error scales with the magnitudes summed, not with each
#: output: a logit near zero may carry the error of its larger neighbours).
FLOAT_RTOL = 1e-5
FLOAT_ATOL = 1e-6


def matching_vectors(graph: Graph, got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Boolean per vector: integer graphs bit for bit (1 LSB when the output node is a pow2 Softmax,
    computed in float), float32 graphs within ``FLOAT_RTOL * max|expected| + FLOAT_ATOL``."""
    n = len(expected)
    got = np.asarray(got).reshape(n, -1).astype(np.float64)
    ref = np.asarray(expected).reshape(n, -1).astype(np.float64)
    diff = np.abs(got - ref)
    if graph.is_quantized:
        allowed = 1.0 if graph.node(graph.output).op == "Softmax" and graph.scheme == "pow2" else 0.0
        return np.all(diff <= allowed, axis=1)
    scale = np.max(np.abs(ref), axis=1, keepdims=True)
    return np.all(diff <= FLOAT_RTOL * scale + FLOAT_ATOL, axis=1)
