"""Stages convert_tflite and evaluate_tflm: TFLite models of the float graph and their accuracy in the
TFLite Micro host runtime (the reference of TFLM on the boards)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microai.config import section, write_json


def convert_tflite(graph_path: Path, prepared_npz: Path, params: dict[str, Any], out_float: Path,
                   out_int8: Path, threads: int = 1) -> None:
    """Float graph IR -> Keras -> ``float32.tflite`` and full-integer ``int8.tflite`` (TFLite's
    post-training quantization, calibrated on evenly spaced training inputs)."""
    from microai.data import load_prepared
    from microai.data.atomic import atomic_output
    from microai.graph import Graph
    from microai.tflite.convert import representative_samples, to_tflite

    graph = Graph.load(graph_path)
    count = section(params, "frameworks", "tflite-micro", "representative_samples")
    samples = representative_samples(load_prepared(Path(prepared_npz)).x_train, count)
    for precision, out in (("float32", out_float), ("int8", out_int8)):
        model = to_tflite(graph, precision, samples, threads=threads)
        with atomic_output(Path(out)) as tmp:
            tmp.write_bytes(model)


def evaluate_tflm(tflite_path: Path, graph_path: Path, prepared_npz: Path, precision: str,
                  out_json: Path) -> dict[str, Any]:
    """Accuracy of a ``.tflite`` model with the TFLM host runtime on the whole test set, its arena
    and operators; agreement of its predictions with the float graph on the reference executor."""
    from importlib.metadata import version

    from microai.data import load_prepared
    from microai.graph import Graph
    from microai.quant import reference
    from microai.tflite import runtime

    data = load_prepared(Path(prepared_npz))
    graph = Graph.load(graph_path)
    run = runtime.run_tflm(tflite_path, data.x_test)
    predicted = runtime.predict(run)
    arena = runtime.arena_bytes(tflite_path)
    result = {
        "framework": "tflite-micro",
        "precision": precision,
        "accuracy": float(np.mean(predicted == data.y_test)),
        "agreement_with_float_reference": float(np.mean(predicted == reference.predict(graph, data.x_test))),
        "test_vectors": int(len(data.y_test)),
        "params": graph.param_count(),
        "macs": graph.macs(),
        "model_bytes": Path(tflite_path).stat().st_size,
        "arena_bytes": arena.total,
        "arena_head_bytes": arena.head,
        "arena_tail_bytes": arena.tail,
        "operators": runtime.operators(tflite_path),
        "input": run.input.to_json(),
        "output": run.output.to_json(),
        "synthetic": bool(data.provenance.get("synthetic", False)),
        "how_measured": f"TFLM host runtime (PyPI tflite-micro {version('tflite-micro')}, x86-64), "
                        "whole test set; arena: its RecordingMicroAllocator",
    }
    if precision == "int8":
        from microai.tflite.engine import check_c_against_tflm

        result["how_measured"] += (f"; model: TensorFlow {version('tensorflow-cpu')} full-integer post-"
                                   "training quantization of the float model, calibrated on training inputs")
        result["microai_c"] = check_c_against_tflm(tflite_path, data.x_test, run)
        result["microai_c_matches_tflm"] = result["microai_c"]["matches"]
    write_json(out_json, result)
    return result
