"""Stage evaluate: test accuracy of one precision with the reference executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microai.config import write_json


def evaluate(graph_path: Path, prepared_npz: Path, precision: str, out_json: Path) -> dict[str, Any]:
    """Test accuracy with the reference executor (float32 or exact integer arithmetic)."""
    from microai.data import load_prepared
    from microai.graph import Graph
    from microai.quant import reference
    from microai.quant.affine import param_bytes

    graph = Graph.load(graph_path)
    data = load_prepared(Path(prepared_npz))
    result = {
        "precision": precision,
        "graph_precision": graph.precision,
        "accuracy": reference.accuracy(graph, data.x_test, data.y_test),
        "test_vectors": int(len(data.y_test)),
        "params": graph.param_count(),
        "macs": graph.macs(),
        "param_bytes": param_bytes(graph),
        "synthetic": bool(data.provenance.get("synthetic", False)),
        "dataset": {k: v for k, v in data.provenance.items() if k in ("source", "checksums", "unverified")},
        "how_measured": "reference executor (numpy" + (", exact integer arithmetic)" if graph.is_quantized
                                                        else ", float32)"),
    }
    write_json(out_json, result)
    return result
