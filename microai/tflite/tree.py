"""The user's TFLite Micro source tree: an input like a dataset archive, never part of this repository.

A tree has the layout of TFLM's ``create_tflm_tree.py`` output with CMSIS-NN kernels
(``tensorflow/lite/micro/...``, ``third_party/...``); README.md says how to make one. It is named by
``frameworks.tflite-micro.source`` in params.yaml (a path, relative to the working directory or
absolute) or, when that is unset, by the environment variable ``MICROAI_TFLM_TREE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV_VAR = "MICROAI_TFLM_TREE"
PARAM = "frameworks.tflite-micro.source"
#: A file every TFLM tree has; its absence means the path is not one.
MARKER = Path("tensorflow/lite/micro/micro_interpreter.h")
NO_TREE = f"no TFLite Micro source tree (set {PARAM} or {ENV_VAR}; see README)"


class NoTFLMTree(LookupError):
    """No usable TFLM tree; ``str(e)`` is the reason a table row gives after ``unavailable: ``."""


def tree_source(params: Mapping[str, Any],
                environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(path as written, where it was named)`` or None when neither params nor environment name one."""
    environ = os.environ if environ is None else environ
    source = ((params.get("frameworks") or {}).get("tflite-micro") or {}).get("source")
    if source:
        return str(source), PARAM
    if environ.get(ENV_VAR):
        return environ[ENV_VAR], ENV_VAR
    return None


def find_tree(params: Mapping[str, Any], environ: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Path:
    """The absolute path of the named TFLM tree; NoTFLMTree saying why when there is none.

    A relative path is taken from ``cwd`` (default: the current working directory).
    """
    named = tree_source(params, environ)
    if named is None:
        raise NoTFLMTree(NO_TREE)
    source, origin = named
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (Path.cwd() if cwd is None else Path(cwd)) / path
    if not (path / MARKER).is_file():
        raise NoTFLMTree(f"TFLite Micro source tree '{source}' (from {origin}) has no {MARKER.as_posix()}; "
                         "see README")
    return path.resolve()
