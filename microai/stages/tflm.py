"""Stages tflm_library, compile_tflm and measure_tflm: TFLite Micro + CMSIS-NN on the boards, with the same
harness, line protocol and measurement as MicroAI's code (flash_tflm is stage flash)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from microai.config import write_json
from microai.stages.boards import build_fields, build_into, measure_board, unavailable


def tflm_library(params: dict[str, Any], opt: str, out_library: Path, threads: int = 1) -> dict[str, Any]:
    """TFLM + CMSIS-NN of the named tree as a static library for the Cortex-M4F boards at ``opt``:
    taken from the content-keyed cache (built there on a miss), copied to ``out_library``, described
    in ``<out_library>.json`` (path, cache key, -O level)."""
    from microai.data.atomic import atomic_output
    from microai.deploy.frameworks import unavailable_reason
    from microai.deploy.tflm.library import build_library
    from microai.deploy.tflm.tree import named_tree

    out_library = Path(out_library)
    reason = unavailable_reason("tflite-micro", "qemu-m4", params)
    if reason is not None:  # DVC runs every stage; Snakemake plans none of TFLM's board rules then
        result = {"unavailable": reason}
    else:
        library = build_library(named_tree(params), opt, jobs=threads)
        with atomic_output(out_library) as tmp:
            shutil.copyfile(library.archive, tmp)
        result = {"archive": str(out_library), "key": library.key, "opt": opt}
    write_json(out_library.with_suffix(".json"), result)
    return result


def compile_tflm_firmware(board_name: str, tflite: Path, library_json: Path, prepared_npz: Path, vectors: int,
                          opt: str, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Build a ``.tflite`` model with the TFLM adapter and library for a board, its first ``vectors``
    test inputs quantized as the TFLM host runtime feeds them.

    ``out_dir/build.json`` always results: a model that does not fit the board (the real link's
    answer), or no TFLM tree, gives ``{"unavailable": <reason>}`` there and no image.
    """
    import json

    from microai.data import load_prepared
    from microai.deploy.boards import get_board
    from microai.deploy.errors import DoesNotFit
    from microai.deploy.frameworks import unavailable_reason
    from microai.deploy.tflm.firmware import build_tflm_firmware
    from microai.deploy.tflm.library import TflmLibrary
    from microai.deploy.tflm.tree import named_tree
    from microai.tflite.runtime import arena_bytes, quantize_input

    board = get_board(board_name)
    described = json.loads(Path(library_json).read_text())
    fields = {"board": board_name, "opt": opt, "vectors": vectors, "framework": "tflite-micro"}
    reason = described.get("unavailable") or unavailable_reason("tflite-micro", board_name, params)
    if reason is not None:
        return _not_built(Path(out_dir), {**fields, "unavailable": reason})
    tree = named_tree(params)
    library = TflmLibrary.of(Path(described["archive"]), described["key"], tree, opt)
    inputs = quantize_input(tflite, load_prepared(Path(prepared_npz)).x_test[:vectors])
    host_arena = arena_bytes(tflite).total

    def build(folder: Path) -> dict[str, Any]:
        result, sources = build_tflm_firmware(board, Path(tflite), tree, library, host_arena,
                                              inputs.reshape(len(inputs), -1), folder, opt)
        return {**build_fields(result), "host_arena_bytes": host_arena,
                "arena_reserved_bytes": sources.arena_bytes, "operators": list(sources.operators),
                "library": library.key, "elf_sha256": hashlib.sha256(result.elf.read_bytes()).hexdigest()}

    try:
        return build_into(Path(out_dir), build, fields)
    except DoesNotFit as e:
        return _not_built(Path(out_dir), {**fields, "unavailable": str(e), "needs": e.needs, "has": e.has})


def measure_tflm(board_name: str, board_cfg: dict[str, Any], build_json: Path, flash_json: Path, tflite: Path,
                 prepared_npz: Path, timeout: float, out_json: Path,
                 emulated_elf: Path | None = None) -> dict[str, Any]:
    """:func:`measure` for a TFLM image: outputs compared bit for bit with the TFLM host runtime's on the
    same vectors, cycles per operator, RAM with the tensor arena at the bytes TFLM used on the board."""
    from importlib.metadata import version

    from microai.data import load_prepared
    from microai.deploy.tflm.measure import outputs_match
    from microai.tflite.runtime import run_tflm

    reason = unavailable(build_json)
    if reason is not None:
        result = {"board": board_name, "framework": "tflite-micro", "note": f"unavailable: {reason}"}
        write_json(out_json, result)
        return result

    def check(outputs: np.ndarray) -> float:
        x = load_prepared(Path(prepared_npz)).x_test[:len(outputs)]
        return float(outputs_match(run_tflm(tflite, x).outputs, outputs).mean())

    result = measure_board(board_name, board_cfg, build_json, flash_json, timeout, emulated_elf, check)
    result["framework"] = "tflite-micro"
    result["how_measured"] += ("; outputs compared bit for bit with the TFLM host runtime (PyPI tflite-micro "
                               f"{version('tflite-micro')}); cycles per operator: from entering its "
                               "kernel's invoke function to returning")
    write_json(out_json, result)
    return result


def _not_built(out_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """A build folder holding only a build.json that says why there is no image."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    write_json(out_dir / "build.json", result)
    return result
