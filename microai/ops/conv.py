"""Conv1D and Conv2D: cross-correlation with zero padding and stride, plus a bias per output channel.

Weights: ``kernel`` (out, in, k) or (out, in, kh, kw) as in PyTorch, ``bias`` (out,). Attributes:
``stride`` (int or one per axis, default 1), ``padding`` ([left, right] / [top, bottom, left, right],
default none), ``activation`` ("relu" when fused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from microai.graph.ir import GraphError, Node
from microai.ops import tflite
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
        self.integer = {POW2: Linear("kernel", self._products), tflite.TFLITE: tflite.Linear(self._products)}

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
        ctx.check_bound(node)
        kernel = ctx.weights(node, "kernel")
        acc_frac = ctx.input_fmt(node).frac + ctx.fmt(node, "kernel").frac if ctx.integer else 0
        bias = ctx.bias(node, acc_frac)
        c_out, c_in, *ksize = kernel.shape
        in_shape = ctx.input_shape(node)
        params = {"c_in": c_in, "c_out": c_out, "in_size": list(in_shape[1:]),
                  "out_size": list(node.shape[1:]), "kernel_size": ksize, "stride": self.stride(node),
                  "pad": self.padding(node),
                  **ctx.finish(node, acc_frac)}
        template = f"conv{self.dims}d.c.j2"
        channels_last = np.moveaxis(kernel, 1, -1)  # (out, k..., in): a window row is one contiguous run
        if not ctx.optimized:
            arrays = ctx.arrays(node, params, kernel=channels_last.reshape(c_out, -1), bias=bias)
            return ctx.layer(node, template, params, arrays)
        # the optimized kernels see a Conv1D as a Conv2D of one row
        params |= {**as_2d(params), "dims": self.dims}
        kh, kw = params["kernel_size"]
        rows = channels_last.reshape(c_out, kh, kw, c_in)
        bias = np.pad(bias, (0, c_out % 2))
        if ctx.integer:
            # the block kernel shifts right (floor): round half up's term goes into the bias
            bias = ctx.rounding_in_bias(node, bias, params["shift"])
            return self._lower_integer(ctx, node, params, rows, bias, template)
        stride, pad = self.stride(node), self.padding(node)
        inside = [interior(in_shape[1 + d], node.shape[1 + d], ksize[d], stride[d], pad[2 * d])
                  for d in range(self.dims)]
        params["interior"] = [(0, 1), *inside][-2:]
        params["row"] = row = kw * c_in
        pairs = np.pad(rows.reshape(c_out, kh, row), ((0, c_out % 2), (0, 0), (0, 0)))
        # [pair][kernel row][value][channel of the pair]
        arranged = np.moveaxis(pairs.reshape(-1, 2, kh, row), 1, -1).reshape(len(pairs) // 2, -1)
        arrays = ctx.arrays(node, params, kernel=arranged, bias=bias)
        return ctx.layer(node, template, params, arrays, scratch_bytes=2 * kh * row * 4,
                         helpers=[ctx.helper("optimized/_block_f.c.j2")])

    def lower_tflite(self, ctx: LoweringContext, node: Node) -> Layer:
        kernel = ctx.weights(node, "kernel")
        c_out, c_in, *ksize = kernel.shape
        params = {"c_in": c_in, "c_out": c_out, **as_2d(self.geometry(ctx, node))}
        rows = np.moveaxis(kernel, 1, -1)  # (out, k..., in): channels-last windows
        store = tflite.block_store(ctx, node)
        if store is None:
            return tflite.lower_linear(ctx, node, "tflite_conv.c.j2", params, rows.reshape(c_out, -1),
                                       "a 16-bit input whose sums may leave int32 (the optimized kernel "
                                       "accumulates in int32, TFLite in int64)")
        ctx.check_bound(node)
        params |= {**tflite.io_params(ctx.graph, node), "dims": self.dims, "pad_value": tflite.input_affine(
            ctx.graph, node).zero_point[0]}
        kh, kw = params["kernel_size"]
        bias = np.pad(tflite.folded_bias(ctx, node, rows), (0, c_out % 2))
        rows = rows.reshape(c_out, kh, kw, c_in)
        layer = self._lower_integer(ctx, node, params, rows, bias, "tflite_conv.c.j2", store)
        layer.arrays += tflite.requantization_arrays(ctx, node, layer.params)
        return layer

    def geometry(self, ctx: LoweringContext, node: Node) -> dict:
        """``in_size``, ``out_size``, ``kernel_size``, ``stride``, ``pad`` of the layer (its own dims)."""
        return {"in_size": list(ctx.input_shape(node)[1:]), "out_size": list(node.shape[1:]),
                "kernel_size": list(node.weights["kernel"].shape[2:]), "stride": self.stride(node),
                "pad": self.padding(node)}

    def _lower_integer(self, ctx: LoweringContext, node: Node, params: dict, rows: np.ndarray,
                       bias: np.ndarray, template: str, store: dict[str, Any] | None = None) -> Layer:
        """Kernel rows pre-arranged for number_conv_<step>_<unroll> (see optimized/_conv.c.j2).

        int8 bands span the output row unless the node is in ``ctx.block_bands`` (see :func:`band_layout`
        and :func:`codegen.convert.block_bands`);
        ``store``: the tflite scheme's (:func:`microai.ops.tflite.block_store`): its band rows, block kernel
        and stores."""
        c_out, kh, kw, c_in = rows.shape
        c_pad = c_in + c_in % 2  # even: every window starts on a word of the band
        steps, unroll = block_steps(kw * c_pad)
        rows = np.pad(rows, ((0, 0), (0, 0), (0, 0), (0, c_pad - c_in))).reshape(c_out, kh, -1)
        arranged = arrange_pairs(rows, steps, ctx.narrow)
        step = params["stride"][1] * c_pad
        arrays = ctx.arrays(node, params, kernel=arranged, bias=bias)
        params |= {"c_pad": c_pad, "narrow": ctx.narrow, "block": f"{step}_{unroll}", "steps": steps}
        params |= band_layout(params, node.name not in ctx.block_bands)
        block = ctx.helper("optimized/_block.c.j2", step=step, unroll=unroll, rows=kh, out_step=c_out,
                           inner=params["inner"], narrow=ctx.narrow,
                           asm=6 * step + 4 * unroll <= ASM_OFFSET_LIMIT, **(store or {}))
        helpers = [ctx.helper("optimized/_band_row.c.j2"), block]
        if store is not None:  # the band row of the input's type, padded with its zero point; the stores
            params["suffix"] = store["suffix"]
            helpers = [ctx.helper("optimized/_band_row.c.j2", in_t=params["in_t"], padded=True),
                       ctx.helper("optimized/_tflite_store.c.j2", **store), block]
        return ctx.layer(node, template, params, arrays, scratch_bytes=band_scratch_bytes(params),
                         helpers=helpers)


def band_layout(params: dict[str, Any], whole_rows: bool) -> dict[str, Any]:
    """How an integer band convolution (lowered ``params``) walks its output rows: ``inner`` (what the block
    kernel loops through), ``chunk`` (output positions per band), ``span`` (input pixels a band row holds),
    ``band`` and ``weights`` (int16 values of the band and of one widened channel pair's kernel).

    "positions" (int8 with ``whole_rows``): the band spans an output row and each channel pair's kernel is
    widened once into scratch memory, then serves every position of the row. "pairs" (int16, and int8
    where the arena has no room for a row's band): the band spans one block of 4 positions and the block
    runs through the channel pairs, reading the kernel from flash (int8 widens it there with SXTB16: about
    1/16 cycle per MAC more, against several KiB of RAM less).
    """
    cols = params["out_size"][1]
    inner, chunk = ("positions", -(-cols // 4) * 4) if params["narrow"] and whole_rows else ("pairs", 4)
    kh, kw = params["kernel_size"]
    steps, c_pad = params["steps"], params["c_pad"]
    span = (chunk - 1) * params["stride"][1] + max(kw, -(-2 * steps // c_pad))
    return {"inner": inner, "chunk": chunk, "span": span, "band": kh * span * c_pad,
            "weights": kh * steps * 4 if inner == "positions" else 0}


def band_scratch_bytes(params: dict[str, Any]) -> int:
    """Scratch memory of an integer band convolution: its band, and int8's widened channel pair."""
    return 2 * (params["band"] + params["weights"])


def as_2d(geometry: dict) -> dict:
    """Window geometry (``in_size``, ``out_size``, ``kernel_size``, ``stride``, ``pad``) of a 1D or 2D
    operator as that of a 2D one: a 1D operator is a 2D operator over one row."""
    return {"in_size": [1, *geometry["in_size"]][-2:], "out_size": [1, *geometry["out_size"]][-2:],
            "kernel_size": [1, *geometry["kernel_size"]][-2:], "stride": [1, *geometry["stride"]][-2:],
            "pad": [0, 0, *geometry["pad"]][-4:]}


def arrange_pairs(rows: np.ndarray, steps: int, narrow: bool) -> np.ndarray:
    """Integer kernel rows (out, kernel rows, n) as the optimized kernels read them: one line per output
    channel pair (an odd last channel gets a zero partner), each kernel row zero-padded to ``steps`` steps of
    2 values, a step being the words (a0 a1) (b0 b1) of channels a and b; int8 (``narrow``) stores
    a0 b0 a1 b1 instead, which SXTB16 and SXTB16 ROR #8 turn into those two words."""
    c_out, kh, n = rows.shape
    rows = np.pad(rows, ((0, c_out % 2), (0, 0), (0, 2 * steps - n)))
    steps_of = np.moveaxis(rows.reshape(-1, 2, kh, steps, 2), 1, 3)  # [pair][row][step][channel][value]
    if narrow:
        steps_of = np.swapaxes(steps_of, -1, -2)
    return steps_of.reshape(len(rows) // 2, -1)


#: Largest byte offset of the block kernels' LDR (Thumb-2 LDR.W with a 12-bit immediate).
ASM_OFFSET_LIMIT = 4095


def block_steps(n: int) -> tuple[int, int]:
    """(steps, unroll) of number_block for windows of ``n`` values: steps of 2 values, a multiple of the
    unroll factor, chosen to minimise the block's estimated cycles (16 per step, 8 per pass of the loop)."""
    pairs = -(-n // 2)
    unroll = min((1, 2, 4, 8), key=lambda u: (-(-pairs // u) * (16 * u + 8), -u))
    return -(-pairs // unroll) * unroll, unroll


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
