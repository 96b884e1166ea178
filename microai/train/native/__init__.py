"""Native CPU kernels for sharded training (``microai.train.parallel``): see ``ops`` and ``kernels.c``."""

from microai.train.native.library import NativeKernelsUnavailable, kernel_threads
from microai.train.native.ops import (
    NativeConv2d,
    NativeLinear,
    NativeMaxPool2d,
    Peaks,
    ShardPass,
    current_pass,
    layer_forward,
    shard_pass,
    use_native_kernels,
)

__all__ = ["NativeConv2d", "NativeKernelsUnavailable", "NativeLinear", "NativeMaxPool2d", "Peaks",
           "ShardPass", "current_pass", "kernel_threads", "layer_forward", "shard_pass", "use_native_kernels"]
