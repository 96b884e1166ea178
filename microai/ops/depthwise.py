"""DepthwiseConv1D and DepthwiseConv2D: each input channel convolved with its own filters (TFLite's
DEPTHWISE_CONV_2D, PyTorch's Conv with ``groups = in_channels``).

Weights: ``kernel`` (in x multiplier, 1, k) / (in x multiplier, 1, kh, kw) as in PyTorch; output channel
``o`` reads input channel ``o // multiplier``. ``bias`` (out,). Attributes: ``stride``, ``padding``,
``activation`` as for Conv. Integer semantics: the tflite scheme (the paper's pow2 scheme has none).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import GraphError, Node
from microai.ops import tflite
from microai.ops.base import Operator, Shape, per_channel, single, spatial
from microai.ops.conv import as_2d, conv_out
from microai.ops.windows import windows, zero_pad

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


class DepthwiseConv(Operator):
    weights = ("kernel", "bias")
    relu_fusable = True
    absorbs_padding = True

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.name = f"DepthwiseConv{dims}D"
        self.integer = {tflite.TFLITE: tflite.Linear(self._products)}

    def stride(self, node: Node) -> list[int]:
        return spatial(node, "stride", self.dims, 1)

    def padding(self, node: Node) -> list[int]:
        return spatial(node, "padding", 2 * self.dims, [0] * 2 * self.dims)

    @staticmethod
    def multiplier(node: Node, in_channels: int) -> int:
        return len(node.weights["kernel"]) // in_channels

    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        where = node.describe()
        x, k = single(ins, node), node.weights["kernel"]
        if len(x) != self.dims + 1 or k.ndim != self.dims + 2 or k.shape[1] != 1:
            raise GraphError(f"{where}: input shape {x} / kernel {k.shape} do not make a {node.op} "
                             f"(kernel (channels x multiplier, 1, ...))")
        if len(k) % x[0]:
            raise GraphError(f"{where}: {len(k)} filters are not a multiple of the {x[0]} input channels")
        stride, pad = self.stride(node), self.padding(node)
        return (len(k), *[conv_out(x[1 + d], k.shape[2 + d], stride[d], pad[2 * d] + pad[2 * d + 1], where)
                          for d in range(self.dims)])

    def macs(self, node: Node) -> int:
        return int(np.prod(node.shape)) * int(np.prod(node.weights["kernel"].shape[2:]))

    def _sum(self, node: Node, x: np.ndarray, kernel: np.ndarray, dtype: type) -> np.ndarray:
        """Bias-free sums of products in ``dtype``: (N, out, *spatial)."""
        x = np.repeat(x.astype(dtype), self.multiplier(node, x.shape[1]), axis=1)
        win = windows(zero_pad(x, self.padding(node)), list(kernel.shape[2:]), self.stride(node))
        k = kernel[:, 0].astype(dtype).reshape(1, len(kernel), *[1] * self.dims, *kernel.shape[2:])
        return (win * k).sum(axis=tuple(range(-self.dims, 0)))

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        y = self._sum(node, ins[0], node.weights["kernel"], np.float32)
        return y + per_channel(node.weights["bias"].astype(np.float32), y.ndim)

    def _products(self, node: Node, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        return np.rint(self._sum(node, x, kernel, np.float64)).astype(np.int64)

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        kernel = ctx.weights(node, "kernel")
        in_shape = ctx.input_shape(node)
        geometry = {"in_size": list(in_shape[1:]), "out_size": list(node.shape[1:]),
                    "kernel_size": list(kernel.shape[2:]), "stride": self.stride(node),
                    "pad": self.padding(node)}
        params = {"c_in": in_shape[0], "c_out": len(kernel),
                  "depth_multiplier": self.multiplier(node, in_shape[0]), **as_2d(geometry)}
        rows = kernel.reshape(len(kernel), -1)
        if not tflite.optimizable(ctx, node) or params["depth_multiplier"] != 1:
            why = "the optimized depthwise kernel takes int8 tensors and a depth multiplier of 1"
            return tflite.lower_linear(ctx, node, "tflite_depthwise.c.j2", params, rows, why)
        zp = tflite.input_affine(ctx.graph, node).zero_point[0]
        params["zp_pair"] = f"0x{(zp & 0xFFFF) * 0x10001:08x}"  # the zero point in both halfwords, for SSUB16
        layer = tflite.lower_linear(ctx, node, "tflite_depthwise.c.j2", params, np.ascontiguousarray(rows.T))
        layer.fallback = None
        return layer


OPERATORS = (DepthwiseConv(1), DepthwiseConv(2))
