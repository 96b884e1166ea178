"""Memory layout of tensors in the generated C: channels-last.

A tensor of logical (PyTorch) shape ``(C, L)`` is stored as ``[L][C]``, ``(C, H, W)`` as
``[H][W][C]``, a vector ``(N,)`` as is. Channels-last puts the ``kernel x channels`` window of a
convolution in one contiguous run, which suits the compiler's vectoriser and the Cortex-M4 dual
16-bit multiply-accumulate. A Flatten costs nothing: its output keeps the memory order of its
input, and the Dense layer that reads it has its kernel columns permuted at generation time.

Every buffer is described by its *layout shape*: the logical shape whose channels-last order the
memory follows (the node's own shape, or for a flattened vector the shape before Flatten).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codegen.ctext import CTYPE_DTYPES, tensor_ctype
from codegen.errors import CodegenError
from microai.graph import Graph
from microai.quant.reference import quantize_input


def memory_order(layout_shape: Sequence[int]) -> np.ndarray:
    """Index array: memory position i holds the logical (channels-first, C-order) element order[i]."""
    shape = tuple(int(s) for s in layout_shape)
    flat = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    if flat.ndim > 1:
        flat = np.moveaxis(flat, 0, -1)
    return flat.ravel()


def pack_input(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Batch ``(N, *input shape)`` -> ``(N, MODEL_INPUT_SIZE)`` in C memory order and C dtype.

    Integer graphs are quantized with the reference executor's conversion, so the C code and
    ``reference.run_int`` see the same integers.
    """
    shape = tuple(graph.input.shape)
    x = np.asarray(x)
    if x.shape[1:] != shape:
        raise CodegenError(f"input batch of shape {x.shape} does not match the model input {shape} (+ batch)")
    values = quantize_input(graph, x) if graph.is_quantized else x
    values = np.asarray(values).astype(CTYPE_DTYPES[tensor_ctype(graph, graph.input)])
    return np.ascontiguousarray(values.reshape(len(x), -1)[:, memory_order(shape)])


def unpack_output(y: np.ndarray, output_shape: Sequence[int], layout_shape: Sequence[int]) -> np.ndarray:
    """``(N, MODEL_OUTPUT_SAMPLES)`` in C memory order -> ``(N, *output_shape)`` logical order."""
    y = np.asarray(y)
    logical = np.empty_like(y)
    logical[:, memory_order(layout_shape)] = y
    return logical.reshape(len(y), *output_shape)
