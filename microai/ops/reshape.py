"""Input, Flatten and Identity: operators that compute nothing.

Flatten and Identity are buffer aliases in the generated C (their output is their input's memory;
a Dense reading a flattened channels-last tensor has its kernel columns permuted instead).
"""

from __future__ import annotations

import math

import numpy as np

from microai.graph.ir import GraphError, Node
from microai.ops import tflite
from microai.ops.base import IntegerSemantics, Operator, Shape, single
from microai.ops.pow2 import POW2, PassThrough


class Input(Operator):
    """The network input; attribute ``shape`` (channels first, no batch dimension)."""

    name = "Input"
    # quantizers give it the format of its values; nothing to run
    integer = {POW2: IntegerSemantics(), tflite.TFLITE: tflite.TFLiteSemantics()}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        if ins or "shape" not in node.attrs:
            raise GraphError(f"{node.describe()}: an Input has no inputs and a 'shape' attribute")
        return tuple(int(s) for s in node.attrs["shape"])


def _flatten(node: Node, x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def _identity(node: Node, x: np.ndarray) -> np.ndarray:
    return x


class Flatten(Operator):
    name = "Flatten"
    keeps_input_format = True
    alias = True
    integer = {POW2: PassThrough(_flatten), tflite.TFLITE: tflite.PassThrough(_flatten)}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return (math.prod(single(ins, node)),)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return _flatten(node, ins[0])


class Identity(Operator):
    name = "Identity"
    keeps_input_format = True
    alias = True
    integer = {POW2: PassThrough(_identity), tflite.TFLITE: tflite.PassThrough(_identity)}

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        return single(ins, node)

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        return ins[0]


OPERATORS = (Input(), Flatten(), Identity())
