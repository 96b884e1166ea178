"""Stage check_host: the generated C built natively, compared with the reference on the whole test set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microai.config import write_json


def check_host(graph_path: Path, c_dir: Path, prepared_npz: Path, out_json: Path) -> dict[str, Any]:
    """Compile the generated C natively and compare it with the reference on the WHOLE test set."""
    import json

    from codegen.host import check_against_reference
    from microai.data import load_prepared
    from microai.graph import Graph

    graph = Graph.load(graph_path)
    data = load_prepared(Path(prepared_npz))
    check = check_against_reference(graph, Path(c_dir), data.x_test, data.y_test)
    report = json.loads((Path(c_dir) / "codegen_report.json").read_text())
    result = {**_jsonable(check), **{k: v for k, v in report.items() if k.startswith("activation_bytes")},
              "test_vectors": int(len(data.y_test)), "how_measured": "host build (cc), whole test set"}
    write_json(out_json, result)
    return result


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}
