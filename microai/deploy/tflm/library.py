"""TFLM + CMSIS-NN compiled once into a static library per target flag set, cached by content.

The library is compiled with the compiler and target flags of MicroAI's own firmware
(:data:`microai.deploy.toolchain.CORTEX_M4F_FLAGS` and the pipeline's ``-O`` level) plus the tree's
include dirs, defines and language flags. The cache key is a SHA-256 of the compiler's identity,
every flag and the tree's content (:meth:`TflmTree.digest`), so tests, benchmarks and pipeline runs
on one machine share one build: ``<cache>/tflm/<key>/libtflm.a`` with ``library.json`` beside it.
The cache folder is ``$MICROAI_CACHE_DIR`` or ``build/cache`` in the repository.

Build time: nearly every TFLM .cc includes ``schema_generated.h`` (1 MB of generated flatbuffers code,
~3 s of parsing per file, 2/3 of the whole build). It is precompiled once (GCC PCH, same flags) and
force-included; the objects keep the same instructions (only the order of some sections changes).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from microai.deploy.errors import BuildError
from microai.deploy.tflm.tree import TflmTree
from microai.deploy.toolchain import CORTEX_M4F_FLAGS, REPO, require_tool, run_checked

CACHE_ENV = "MICROAI_CACHE_DIR"
ARCHIVE = "libtflm.a"
PRECOMPILED = "tensorflow/lite/schema/schema_generated.h"
MANIFEST = "library.json"
CXX, CC, AR = "arm-none-eabi-g++", "arm-none-eabi-gcc", "arm-none-eabi-ar"


@dataclass(frozen=True)
class TflmLibrary:
    """A built library: the archive, its cache key and the flags to compile code against it
    (the adapter: absolute include dirs of the tree). ``build_seconds`` and ``jobs`` describe the
    compilation that filled the cache; None where the library comes from a pipeline artifact, whose
    content must not depend on the clock or the thread count."""

    archive: str
    key: str
    cxx_flags: list[str]
    build_seconds: float | None = None
    jobs: int | None = None

    @classmethod
    def of(cls, archive: Path, key: str, tree: TflmTree, opt: str,
           target: Sequence[str] = CORTEX_M4F_FLAGS) -> TflmLibrary:
        """The library in ``archive`` built with ``key``; BuildError if ``tree`` and ``opt`` give another."""
        if library_key(tree, opt, target) != key:
            raise BuildError(f"{archive} was built from another TFLite Micro tree, compiler or flags than "
                             f"{tree.root} at {opt}: rebuild it (rule tflm_library)")
        return cls(str(archive), key, compile_flags(tree, "c++", opt, target, absolute_includes=True))


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or REPO / "build" / "cache")


def compile_flags(tree: TflmTree, language: str, opt: str, target: Sequence[str] = CORTEX_M4F_FLAGS,
                  absolute_includes: bool = False) -> list[str]:
    """Flags compiling the tree's ``language`` ("c++" or "c") sources for ``target`` at ``opt``.

    The tree's own ``-O`` flags give way to ``opt``, so TFLM and MicroAI code share one level.
    """
    common = [f for f in tree.flags.get("COMMON", ()) if not f.startswith("-O")]
    own = tree.flags.get("CXXFLAGS" if language == "c++" else "CFLAGS", ())
    includes = tree.include_dirs if absolute_includes else list(tree.flags.get("INCLUDES", ()))
    return [*target, opt, *includes, *tree.flags.get("DEFINES", ()), *common, *own]


def library_key(tree: TflmTree, opt: str, target: Sequence[str] = CORTEX_M4F_FLAGS) -> str:
    h = hashlib.sha256()
    for tool in (CXX, CC):
        h.update(_compiler_identity(tool).encode())
    h.update(" ".join([*target, opt]).encode())
    h.update(tree.digest().encode())
    return h.hexdigest()[:24]


def build_library(tree: TflmTree, opt: str = "-O2", jobs: int | None = None,
                  cache_dir: Path | None = None, target: Sequence[str] = CORTEX_M4F_FLAGS) -> TflmLibrary:
    """The cached library for ``tree`` at ``opt``; compiles it (``jobs`` in parallel) on a cache miss.

    Safe against concurrent callers: one builds under a file lock, the others wait and reuse it.
    """
    key = library_key(tree, opt, target)
    folder = (cache_dir or cache_root()) / "tflm" / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / MANIFEST).is_file():
            _build(tree, opt, target, key, folder, jobs or len(os.sched_getaffinity(0)))
    built = json.loads((folder / MANIFEST).read_text())
    # Include paths come from this call: a tree with the same content elsewhere shares the archive.
    flags = compile_flags(tree, "c++", opt, target, absolute_includes=True)
    return TflmLibrary(str(folder / ARCHIVE), key, flags, built["build_seconds"], built["jobs"])


def _build(tree: TflmTree, opt: str, target: Sequence[str], key: str, folder: Path, jobs: int) -> None:
    tools = {"c++": require_tool(CXX), "c": require_tool(CC)}
    ar = require_tool(AR)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{key}.") as tmp:
        staging = Path(tmp)
        flags = {lang: compile_flags(tree, lang, opt, target) for lang in tools}
        flags["c++"] += ["-Winvalid-pch", "-include", _precompile(tools["c++"], flags["c++"], tree, staging)]

        def compile_one(source: str) -> Path:
            lang = "c++" if source.endswith(".cc") else "c"
            obj = staging / (source.replace("/", "__") + ".o")
            # Relative source paths from the tree root: __FILE__ in TFLM's messages does not depend on
            # where the tree lives.
            run_checked([tools[lang], *flags[lang], "-c", source, "-o", obj],
                        f"compiling TFLite Micro source {tree.root / source}", cwd=tree.root)
            return obj

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            objects = sorted(pool.map(compile_one, tree.sources))
        run_checked([ar, "rcsD", staging / ARCHIVE, *objects],
                    f"archiving the TFLite Micro library in {staging}")
        built = {"key": key, "compiler": _compiler_identity(CXX), "objects": len(objects),
                 "build_seconds": round(time.perf_counter() - started, 1), "jobs": jobs}
        (staging / MANIFEST).write_text(json.dumps(built, indent=1) + "\n")
        for obj in [*objects, *staging.glob("tflm_pch.h*")]:
            obj.unlink()
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
        staging.mkdir()  # TemporaryDirectory removes its (now empty) folder itself


def _precompile(cxx: str, flags: list[str], tree: TflmTree, staging: Path) -> Path:
    """Precompile the schema header; the returned wrapper, force-included, makes GCC load its .gch."""
    wrapper = staging / "tflm_pch.h"
    wrapper.write_text(f'#include "{PRECOMPILED}"\n')
    run_checked([cxx, *flags, "-x", "c++-header", wrapper, "-o", wrapper.with_suffix(".h.gch")],
                f"precompiling {tree.root / PRECOMPILED}", cwd=tree.root)
    return wrapper


def _compiler_identity(tool: str) -> str:
    try:
        out = subprocess.run([require_tool(tool), "--version"], capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as e:
        raise BuildError(f"{tool} --version failed: {e.stderr.strip()}") from e
    return out.stdout.splitlines()[0]
