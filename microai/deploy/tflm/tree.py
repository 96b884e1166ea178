"""What builds a TFLite Micro + CMSIS-NN source tree, and a digest of its content.

:mod:`microai.tflite.tree` finds the tree the user names; this module checks that it can be built and
reads how. The layout is that of TFLM's ``create_tflm_tree.py`` output for
``OPTIMIZED_KERNEL_DIR=cmsis_nn`` (``tensorflow/``,
``third_party/{cmsis_nn,flatbuffers,gemmlowp,ruy}``). Two optional files describe the build:
``sources.txt`` (the .cc/.c files, one per line; default: every source under ``tensorflow/`` and
``third_party/``) and ``flags.txt`` (``KEY=value`` lines: INCLUDES, DEFINES, COMMON, CXXFLAGS,
CFLAGS; default: :data:`DEFAULT_FLAGS`).
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microai.tflite.tree import find_tree

#: What the adapter and the firmware build need from any tree.
REQUIRED_FILES = (
    "tensorflow/lite/micro/micro_interpreter.h",
    "tensorflow/lite/micro/micro_mutable_op_resolver.h",
    "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h",
    "tensorflow/lite/schema/schema_generated.h",
    "third_party/flatbuffers/include/flatbuffers/flatbuffers.h",
    "third_party/cmsis_nn/Include/arm_nnfunctions.h",
)
SOURCE_DIRS = ("tensorflow", "third_party")
SOURCE_SUFFIXES = (".cc", ".c")
#: The flags of a create_tflm_tree.py tree for Cortex-M with CMSIS-NN kernels (TFLM's cortex_m_generic
#: and ext_libs/cmsis_nn makefiles); the target and optimisation flags are MicroAI's own.
DEFAULT_FLAGS = {
    "INCLUDES": "-I. -Ithird_party/gemmlowp -Ithird_party/flatbuffers/include -Ithird_party/ruy "
                "-Ithird_party/cmsis_nn -Ithird_party/cmsis_nn/Include",
    "DEFINES": "-DTF_LITE_STATIC_MEMORY -DTF_LITE_DISABLE_X86_NEON -DCMSIS_NN -DTF_LITE_MCU_DEBUG_LOG "
               "-DPROJECT_GENERATION -DARM_NN_ENABLE_F16=0 -DARM_NN_ENABLE_F32=0",
    "COMMON": "-ffp-contract=off -ffunction-sections -fdata-sections -fno-unwind-tables "
              "-fno-asynchronous-unwind-tables",
    "CXXFLAGS": "-std=c++17 -fno-rtti -fno-exceptions -fno-threadsafe-statics",
    "CFLAGS": "-std=c17",
}


class TflmTreeError(ValueError):
    """The named TFLM tree is missing, incomplete or unreadable; the message names the files."""


@dataclass(frozen=True)
class TflmTree:
    """A validated tree: absolute ``root``, its ``sources`` (relative paths) and compile ``flags``."""

    root: Path
    sources: tuple[str, ...]
    flags: dict[str, tuple[str, ...]]

    @property
    def include_dirs(self) -> list[str]:
        """The INCLUDES flags made absolute (for compiling code that lives outside the tree)."""
        return [f"-I{self.root / f[2:]}" if f.startswith("-I") else f for f in self.flags["INCLUDES"]]

    def digest(self) -> str:
        """SHA-256 of every file's path and content, and of the flags: the library cache key's tree part."""
        h = hashlib.sha256()
        for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
            rel = path.relative_to(self.root).as_posix()
            h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        for key in sorted(self.flags):
            h.update(f"{key}={' '.join(self.flags[key])}\n".encode())
        return h.hexdigest()


def named_tree(params: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> TflmTree:
    """The tree params.yaml or ``$MICROAI_TFLM_TREE`` names, validated (NoTFLMTree if none is named)."""
    return load_tree(find_tree(params, environ))


def load_tree(root: Path) -> TflmTree:
    """Validate the tree at ``root``; raise TflmTreeError naming every missing file."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise TflmTreeError(f"TFLite Micro source tree {root} does not exist or is not a directory")
    sources = _sources(root)
    missing = [f for f in (*REQUIRED_FILES, *sources) if not (root / f).is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise TflmTreeError(f"TFLite Micro source tree {root} lacks {len(missing)} file(s): {shown} "
                            "(a tree made by create_tflm_tree.py with OPTIMIZED_KERNEL_DIR=cmsis_nn has "
                            "them; see README)")
    return TflmTree(root, sources, _flags(root))


def _sources(root: Path) -> tuple[str, ...]:
    listed = root / "sources.txt"
    if listed.is_file():
        lines = (line.strip() for line in listed.read_text().splitlines())
        sources = tuple(line for line in lines if line and not line.startswith("#"))
        if not sources:
            raise TflmTreeError(f"{listed} lists no source files")
        return sources
    found = sorted(p.relative_to(root).as_posix() for d in SOURCE_DIRS if (root / d).is_dir()
                   for p in (root / d).rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file())
    if not found:
        raise TflmTreeError(f"TFLite Micro source tree {root} has no .cc/.c files under {list(SOURCE_DIRS)}")
    return tuple(found)


def _flags(root: Path) -> dict[str, tuple[str, ...]]:
    values = dict(DEFAULT_FLAGS)
    path = root / "flags.txt"
    if path.is_file():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise TflmTreeError(f"{path}:{number}: expected KEY=value, got {line!r}")
            values[key.strip()] = value.strip()
    try:
        return {k: tuple(shlex.split(v)) for k, v in values.items()}
    except ValueError as e:
        raise TflmTreeError(f"{path}: cannot split flags: {e}") from e
