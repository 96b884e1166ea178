"""Builds ``kernels.c`` with the host's C compiler on first use and loads it (ctypes).

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
from pathlib import Path

SOURCE = Path(__file__).with_name("kernels.c")
#: no -ffast-math: the kernels' sums keep their order; FMA contraction is what they are written for;
#: no floating-point traps (the values are the same) lets GCC vectorize floor and trunc
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-fno-trapping-math", "-std=c11", "-shared", "-fPIC")

_P, _I, _L, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
#: argument types, and the result type of the functions that return a status
_SIGNATURES = {
    "conv_forward": [_P, _I, _I, _I, _P, _L, _L, _L, _L, _I, _P, _I, _P, _I, _I, _I, _I, _I, _P, _I, _I, _P],
    "conv_backward_weight": [_P, _I, _I, _I, _P, _I, _I, _I, _I, _I, _P, _I, _P, _P],
    "max_pool_forward": [_P, _I, _I, _I, _I, _I, _I, _P, _P],
    "max_pool_backward": [_P, _P, _I, _I, _I, _I, _I, _I, _P],
    "max_abs_slices": [_P, _L, _P, _I, _P],
    "quantize_slices": [_P, _L, _P, _I, _P, _P, _P, _F, _F, _I],
}


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
                                       f"({SOURCE}) are built with it (Debian: apt-get install gcc; "
                                       f"or set CC)")
    path = cache_dir() / f"kernels-{_build_key(cc)}.so"
    if not path.exists():
        try:
            _build(cc, path)
        except OSError as e:
            raise NativeKernelsUnavailable(f"cannot write the training kernels to {path.parent} ({e}): set "
                                           f"MICROAI_CACHE_DIR to a writable folder") from e
    lib = ctypes.CDLL(str(path))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, _I if name.startswith("conv") else None
    return lib


def _build_key(cc: str) -> str:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode(), _cpu_features().encode()):
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
        run = subprocess.run([cc, *FLAGS, "-o", scratch, str(SOURCE)], capture_output=True, text=True)
        if run.returncode != 0:
            raise NativeKernelsUnavailable(f"building {SOURCE} with '{cc}' failed (exit {run.returncode}):\n"
                                           f"{run.stderr.strip()}")
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
