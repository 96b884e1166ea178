"""Conv1D and Conv2D: cross-correlation with zero padding and stride, plus a bias per output channel.

Weights: ``kernel`` (out, in, k) or (out, in, kh, kw) as in PyTorch, ``bias`` (out,). Attributes:
``stride`` (int or one per axis, default 1), ``padding`` ([left, right] / [top, bottom, left, right],
default none), ``activation`` ("relu" when fused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from microai.graph.ir import GraphError, Node
from microai.ops.base import Operator, Shape, per_channel, single, spatial
from microai.ops.pow2 import POW2, Linear
from microai.ops.windows import conv_sum

if TYPE_CHECKING:
    from codegen.lowering import Layer, LoweringContext


class Conv(Operator):
    weights = ("kernel", "bias")
    relu_fusable = True
    folds_scale = True
    absorbs_padding = True

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.name = f"Conv{dims}D"
        self.integer = {POW2: Linear("kernel", self._products)}

    # ------------------------------------------------------------ attributes
    def stride(self, node: Node) -> list[int]:
        return spatial(node, "stride", self.dims, 1)

    def padding(self, node: Node) -> list[int]:
        return spatial(node, "padding", 2 * self.dims, [0] * 2 * self.dims)

    # ------------------------------------------------------------ shape, float, integer
    def shape(self, node: Node, ins: list[Shape]) -> Shape:
        where = node.describe()
        x, k = single(ins, node), node.weights["kernel"]
        if len(x) != self.dims + 1 or k.ndim != self.dims + 2:
            raise GraphError(f"{where}: input shape {x} / kernel {k.shape} do not make a {node.op}")
        if k.shape[1] != x[0]:
            raise GraphError(f"{where}: kernel expects {k.shape[1]} input channels, input has {x[0]}")
        stride, pad = self.stride(node), self.padding(node)
        spatial_out = [conv_out(x[1 + d], k.shape[2 + d], stride[d], pad[2 * d] + pad[2 * d + 1], where)
                       for d in range(self.dims)]
        return (k.shape[0], *spatial_out)

    def macs(self, node: Node) -> int:
        return int(np.prod(node.shape)) * int(np.prod(node.weights["kernel"].shape[1:]))

    def run_float(self, node: Node, ins: list[np.ndarray]) -> np.ndarray:
        y = conv_sum(ins[0], node.weights["kernel"], self.stride(node), self.padding(node), np.float32)
        return y + per_channel(node.weights["bias"].astype(np.float32), y.ndim)

    def _products(self, node: Node, x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        y = conv_sum(x, kernel, self.stride(node), self.padding(node), np.float64)
        return np.rint(y).astype(np.int64)

    # ------------------------------------------------------------ C
    def lower(self, ctx: LoweringContext, node: Node) -> Layer:
        dims = self.dims
        ctx.check_bound(node)
        kernel = ctx.weights(node, "kernel")
        c_out, c_in, *ksize = kernel.shape
        pad, stride = self.padding(node), self.stride(node)
        for d in range(dims):
            if max(pad[2 * d], pad[2 * d + 1]) >= ksize[d]:
                raise ctx.error(f"{node.describe()}: padding {pad} not smaller than kernel {ksize}; the "
                                f"template needs every window to touch the input")
        acc_frac = ctx.input_fmt(node).frac + ctx.fmt(node, "kernel").frac if ctx.integer else 0
        # channels-last kernel rows: (out, k..., in) so a window row is one contiguous run
        rows = np.moveaxis(kernel, 1, -1).reshape(c_out, -1)
        n_dot = rows.shape[1]
        if ctx.widen and dims == 1 and n_dot % 4:
            # int8 Conv1D: whole windows are widened with zeros up to a multiple of four values, so the kernel
            # rows get zero columns to match and every inner product runs in the 4-value SIMD steps
            n_dot += -n_dot % 4
            rows = np.pad(rows, ((0, 0), (0, n_dot - rows.shape[1])))
        in_shape, out_shape = ctx.input_shape(node), node.shape
        params = {"c_in": c_in, "c_out": c_out, "in_size": list(in_shape[1:]),
                  "out_size": list(out_shape[1:]), "kernel_size": ksize, "stride": stride, "pad": pad,
                  "widen": ctx.widen, "n_dot": n_dot,
                  "interior": [interior(in_shape[1 + d], out_shape[1 + d], ksize[d], stride[d], pad[2 * d])
                               for d in range(dims)],
                  **ctx.finish(node, acc_frac)}
        arrays = [ctx.array(node, "kernel", "number_t", rows),
                  ctx.array(node, "bias", "long_number_t", ctx.bias(node, acc_frac))]
        params["kernel"], params["bias"] = arrays[0].name, arrays[1].name
        return ctx.layer(node, f"conv{dims}d.c.j2", params, arrays)


def conv_out(length: int, k: int, stride: int, pad: int, where: str) -> int:
    """Output length of a convolution over ``length`` values padded by ``pad`` in total."""
    out = (length + pad - k) // stride + 1
    if out < 1:
        raise GraphError(f"{where}: kernel {k} larger than padded input {length + pad}")
    return out


def interior(in_size: int, out_size: int, kernel: int, stride: int, pad_before: int) -> tuple[int, int]:
    """Output positions [first, end) along one axis whose window lies wholly inside the input (no padding)."""
    first = -(-pad_before // stride)
    end = min(out_size, (in_size - kernel + pad_before) // stride + 1)
    return first, max(first, end)


OPERATORS = (Conv(1), Conv(2))
