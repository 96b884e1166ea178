"""Builds ``kernels.c`` (and its thread pool, ``pool.c``) with the host's C compiler on first use and loads
it (ctypes).

The shared library is cached under ``$MICROAI_CACHE_DIR`` (default ``$XDG_CACHE_HOME/microai`` or
``~/.cache/microai``), named by a hash of the source, the flags, the compiler's version and the CPU's
features: a cache shared by cluster nodes with different CPUs keeps one build per CPU type
(``-march=native``). Concurrent first uses (parallel Snakemake jobs) each build to a scratch name and
rename it into place.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).parent
#: compiled together (the header is hashed with them)
SOURCES = (HERE / "kernels.c", HERE / "pool.c")
HEADERS = (HERE / "pool.h",)
#: no -ffast-math: the kernels' sums keep their order; FMA contraction is what they are written for;
#: no floating-point traps (the values are the same) lets GCC vectorize floor and trunc
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-trapping-math", "-std=c11", "-shared", "-fPIC",
         "-pthread")

_P, _I, _L, _F, _D = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float, ctypes.c_double
#: argument types of the functions
_SIGNATURES = {
    "conv_forward": [_P, _I, _I, _I, _P, _L, _L, _L, _L, _I, _P, _I, _P, _I, _I, _I, _I, _I, _P, _I, _I, _P],
    "conv_backward_weight": [_P, _I, _I, _I, _P, _I, _I, _I, _I, _I, _P, _I, _P, _P],
    "max_pool_forward": [_P, _I, _I, _I, _I, _I, _I, _P, _P],
    "max_pool_backward": [_P, _P, _I, _I, _I, _I, _I, _I, _P],
    "max_abs_slices": [_P, _L, _P, _I, _P],
    "quantize_slices": [_P, _L, _P, _I, _P, _P, _P, _F, _F, _I],
    "observe_quantize": [_P, _L, _P, _I, _P, _I, _D, _D, _D, _I, _I, _I, _P, _P],
    "set_threads": [_I],
    "kernel_threads": [],
    "shared_runs": [],
}
#: result types (the others return nothing): a status, the thread count, a count of calls
_RESULTS = {"conv_forward": _I, "conv_backward_weight": _I, "observe_quantize": _I, "kernel_threads": _I,
            "shared_runs": ctypes.c_long}


class NativeKernelsUnavailable(RuntimeError):
    """The training kernels could not be built (no compiler, or it failed)."""


def compiler() -> str:
    return os.environ.get("CC", "gcc")


def cache_dir() -> Path:
    if "MICROAI_CACHE_DIR" in os.environ:
        return Path(os.environ["MICROAI_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "microai"


@functools.cache
def library() -> ctypes.CDLL:
    """The compiled kernels, built into the cache if needed."""
    cc = compiler()
    if shutil.which(cc) is None:
        raise NativeKernelsUnavailable(f"C compiler '{cc}' not found on PATH: MicroAI's training kernels "
                                       f"({SOURCES[0].parent}) are built with it (Debian: apt-get install "
                                       f"gcc; or set CC)")
    path = cache_dir() / f"kernels-{_build_key(cc)}.so"
    if not path.exists():
        try:
            _build(cc, path)
        except OSError as e:
            raise NativeKernelsUnavailable(f"cannot write the training kernels to {path.parent} ({e}): set "
                                           f"MICROAI_CACHE_DIR to a writable folder") from e
    return declared(ctypes.CDLL(str(path)))


def declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    """``lib`` (a build of the kernels) with its functions' argument and result types set."""
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, _RESULTS.get(name)
    return lib


def _build_key(cc: str) -> str:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    sources = [path.read_bytes() for path in SOURCES + HEADERS]
    for part in (*sources, " ".join(FLAGS).encode(), version.encode(), _cpu_features().encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:16]


def _cpu_features() -> str:
    """The CPU's model and feature flags (what -march=native compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _build(cc: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        run = subprocess.run([cc, *FLAGS, "-o", scratch, *map(str, SOURCES)], capture_output=True, text=True)
        if run.returncode != 0:
            names = ", ".join(map(str, SOURCES))
            raise NativeKernelsUnavailable(f"building {names} with '{cc}' failed (exit {run.returncode}):\n"
                                           f"{run.stderr.strip()}")
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


@contextmanager
def kernel_threads(threads: int) -> Iterator[None]:
    """Within the block, each kernel call cuts its work between ``threads`` threads, the calling one
    included (see ``pool.c``): the examples of a convolution or a pooling, the shards of a kernel gradient,
    the slices of a quantization. Each output is computed by one thread, in the same order, whichever it
    is: the bits do not depend on ``threads``. The helper threads are started at the first use and kept."""
    lib = library()
    previous = lib.kernel_threads()
    if previous == threads:
        yield
        return
    lib.set_threads(threads)
    try:
        yield
    finally:
        lib.set_threads(previous)
