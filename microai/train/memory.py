"""Keeping freed memory in the training process (glibc's malloc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: the largest mmap threshold glibc accepts on 64-bit systems
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 256 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Asks glibc's malloc to serve blocks up to 32 MiB from its heap and to keep up to 256 MiB of freed
    heap instead of returning it to the system; True when it could (glibc), False elsewhere.

    Why: a training step frees and allocates the same activation-sized blocks (hundreds of KiB to a
    few MiB) at every step. By default glibc maps such blocks afresh and unmaps them when freed, so
    that every step pays page faults on all of its activations: on the paper's small models, about as
    much time as their convolutions (measured: ResNetv1-6 on the GTSRB shape, 2 x 64 examples per
    step, 65.7 ms with 7,200 page faults against 49.2 ms with 180). Settled once per process; the
    worker processes forked from it inherit it.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
