"""Build the generated C natively and run whole batches through it (bit-exactness checks)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from codegen.convert import load_report, prepare
from codegen.ctext import CTYPE_DTYPES
from codegen.errors import CodegenError
from codegen.layout import pack_input, unpack_output
from codegen.render import render
from microai.graph import Graph
from microai.quant import reference
from microai.quant.compare import matching_vectors

CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-O2")
#: Float results match numpy only without fused multiply-add contraction.
FLOAT_CFLAGS = ("-ffp-contract=off",)
#: docs/arithmetic.md tolerance for float32 graphs.


def compile_host(outdir: Path, build_dir: Path | None = None, cc: str = "cc") -> Path:
    """Compile ``outdir``'s model.c with a stdin/stdout harness; return the executable.

    The executable goes to ``build_dir`` (default: a new temporary folder the caller removes),
    so the generated folder itself is never modified.
    """
    outdir = Path(outdir)
    report = load_report(outdir)
    build = Path(build_dir) if build_dir is not None else Path(tempfile.mkdtemp(prefix="microai-host-"))
    build.mkdir(parents=True, exist_ok=True)
    harness = build / "host_harness.c"
    harness.write_text(render("host_harness.c.j2"))
    exe = build / "model_host"
    flags = [*CFLAGS, *(FLOAT_CFLAGS if report["precision"] == "float32" else ())]
    cmd = [cc, *flags, "-I", str(outdir), str(outdir / "model.c"), str(harness), "-o", str(exe), "-lm"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise CodegenError(f"cannot run host compiler '{cc}': {e}") from e
    if proc.returncode != 0:
        raise CodegenError(f"{outdir}: host build failed ({' '.join(cmd)}):\n{proc.stderr.strip()}")
    return exe


def run_host(graph: Graph, outdir: Path, x: np.ndarray, exe: Path | None = None) -> np.ndarray:
    """Outputs ``(N, *output shape)`` of the generated C for the float inputs ``x`` (whole batch at once).

    Integer graphs return the C integers, float graphs float32; ``exe`` reuses a compile_host build.
    """
    report = load_report(Path(outdir))
    packed = pack_input(graph, x)
    if exe is not None:
        return _run(exe, packed, report)
    build = Path(tempfile.mkdtemp(prefix="microai-host-"))
    try:
        return _run(compile_host(outdir, build), packed, report)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def check_against_reference(graph: Graph, outdir: Path, x: np.ndarray,
                            labels: np.ndarray | None = None) -> dict[str, Any]:
    """Compare the C outputs with ``reference.run`` on the graph the C implements (after passes).

    ``matches`` is the fraction of vectors that ``microai.quant.compare.matching_vectors``
    accepts: bit for bit for integer graphs, within float tolerance for float32.
    """
    if len(x) == 0:
        raise CodegenError(f"{outdir}: no input vectors to check the generated C against the reference "
                           f"(an empty set would report every vector matching)")
    g = prepare(graph)
    c_out = run_host(graph, outdir, x)
    ref = reference.run(g, x)
    n = len(x)
    c_flat, ref_flat = c_out.reshape(n, -1).astype(np.float64), ref.reshape(n, -1).astype(np.float64)
    diff = np.abs(c_flat - ref_flat)
    ok = matching_vectors(g, c_flat, ref_flat)
    result: dict[str, Any] = {
        "vectors": n,
        "matches": float(np.mean(ok)),
        "mismatched_vectors": int(n - np.count_nonzero(ok)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
    }
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise CodegenError(f"labels of shape {labels.shape} do not match {n} inputs")
        result["c_accuracy"] = float(np.mean(np.argmax(c_flat, axis=1) == labels))
        result["reference_accuracy"] = float(np.mean(np.argmax(ref_flat, axis=1) == labels))
    return result


def _run(exe: Path, packed: np.ndarray, report: dict[str, Any]) -> np.ndarray:
    if packed.shape[1] != report["input_size"]:
        raise CodegenError(f"{exe}: packed inputs have {packed.shape[1]} values, the model takes "
                           f"{report['input_size']}")
    proc = subprocess.run([str(exe)], input=packed.tobytes(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise CodegenError(f"{exe} failed with exit code {proc.returncode}: {proc.stderr.decode().strip()}")
    y = np.frombuffer(proc.stdout, dtype=CTYPE_DTYPES[report["output_ctype"]])
    expected = len(packed) * report["output_size"]
    if y.size != expected:
        raise CodegenError(f"{exe}: produced {y.size} output values, expected {expected}")
    return unpack_output(y.reshape(len(packed), -1), report["output_shape"], report["output_layout_shape"])

