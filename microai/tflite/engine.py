"""MicroAI as the engine of a TFLite model: import a quantized ``.tflite``, generate its C, and check that C
against the TFLM host runtime bit for bit (the pipeline records it beside the tflite-micro rows)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from microai.tflite import runtime
from microai.tflite.importer import from_tflite


def check_c_against_tflm(model: runtime.ModelSource, x: np.ndarray, tflm: runtime.TFLMRun | None = None,
                         kernels: str = "optimized") -> dict[str, Any]:
    """Import ``model``, convert it to C (``kernels`` set), build it on the host and run it on every vector of
    ``x`` (float, channels-first like the pipeline's arrays); compare the raw outputs with the TFLM host
    runtime's (``tflm``: a :func:`runtime.run_tflm` of the same inputs, run here if not given)."""
    import codegen
    from codegen.host import run_host

    tflm = tflm if tflm is not None else runtime.run_tflm(model, x)
    graph = from_tflite(model)
    work = Path(tempfile.mkdtemp(prefix="microai-tflite-c-"))
    try:
        result = codegen.convert(graph, work / "c", kernels=kernels)
        ours = run_host(graph, work / "c", x)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(x)
    expected = tflm.outputs.reshape(n, *tflm.output.shape[1:])
    if ours.ndim > 2:  # the IR's channels-first output in TFLite's channels-last order
        ours = np.moveaxis(ours, 1, -1)
    same = np.all(ours.reshape(n, -1).astype(np.int64) == expected.reshape(n, -1).astype(np.int64), axis=1)
    return {"vectors": n, "matches": float(np.mean(same)) if n else 1.0,
            "mismatched_vectors": int(n - np.count_nonzero(same)), "kernels": kernels,
            "operators": graph.metadata["operators"], "precision": graph.precision,
            "activation_bytes_planned": result.activation_bytes_planned,
            "how_measured": f"MicroAI C ({kernels} kernels) of the imported .tflite built on the host (cc), "
                            f"every raw output compared with the TFLM host runtime's on {n} test vectors"}
