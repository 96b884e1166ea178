"""Aggregate per-run JSON results into the long-format results table and the paper's A3-A5 layout.

Per-run results live at ``results/runs/<dataset>/<model>-f<filters>/run<run>/<precision>.<kind>.json``
with kind ``eval`` (accuracy, reference executor), ``check`` (generated C built on the host, whole
test set) or a board name (firmware measurement). Nothing here invents a number: a missing measurement is
an empty cell with the reason in ``note``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = [
    "dataset", "model", "filters", "params", "macs", "precision", "framework", "board", "runs",
    "accuracy_mean", "accuracy_std", "param_bytes", "c_accuracy_mean", "c_matches_reference",
    "activation_bytes_pools", "activation_bytes_planned", "rom_bytes", "ram_bytes", "instructions",
    "cycles", "ms", "energy_uwh", "host_wall_ms", "est_cycles", "est_ms", "est_energy_uwh",
    "outputs_match_reference", "how_measured", "note",
]
KEY = ["dataset", "model", "filters", "precision"]
_PATH = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)-f(?P<filters>\d+)/run(?P<run>\d+)/"
                   r"(?P<precision>[^/]+?)\.(?P<kind>[^./]+)\.json$")
#: Board-measurement fields copied to the table as they are: measured on the board (``cycles``,
#: ``ms``, ``energy_uwh``: DWT cycles of an attached board), emulated (``instructions``), the host's
#: wall time (``host_wall_ms``, not a microcontroller time), and estimates (``est_*``).
BOARD_FIELDS = ["rom_bytes", "ram_bytes", "instructions", "cycles", "ms", "energy_uwh", "host_wall_ms",
                "est_cycles", "est_ms", "est_energy_uwh", "outputs_match_reference"]
#: The paper's Tables A3-A5: metric -> (column, scale). Estimates keep their ``est_`` names; the
#: measured ``ms`` / ``energy_uwh`` rows appear only where a board measured them.
PAPER_METRICS = {"rom_kib": ("rom_bytes", 1 / 1024), "est_ms": ("est_ms", 1.0),
                 "est_energy_uwh": ("est_energy_uwh", 1.0), "ms": ("ms", 1.0),
                 "energy_uwh": ("energy_uwh", 1.0)}
PAPER_KEY = ["dataset", "model", "framework", "board", "precision"]


def read_results(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Per-run JSON files with their identifiers parsed from their paths."""
    records = []
    for path in sorted(Path(p) for p in paths):
        m = _PATH.search(path.as_posix())
        if not m:
            raise ValueError(f"{path}: not a per-run result path "
                             "(<dataset>/<model>-f<F>/run<i>/<precision>.<kind>.json)")
        ids = m.groupdict()
        ids["filters"], ids["run"] = int(ids["filters"]), int(ids["run"])
        records.append({**ids, "data": json.loads(path.read_text()), "path": str(path)})
    return records


def _mean(values: Iterable[float]) -> float:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else float("nan")


def results_table(records: list[dict[str, Any]], boards: list[str],
                  unavailable: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Long-format table: one row per dataset x model x filters x precision x framework x board.

    ``unavailable`` maps (framework, board) to a reason; those rows carry only the model's
    identity and ``note = "unavailable: <reason>"``.
    """
    by_kind: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        by_kind.setdefault(tuple(r[k] for k in KEY), {}).setdefault(r["kind"], []).append(r)
    rows = []
    for key, kinds in sorted(by_kind.items()):
        evals = kinds.get("eval", [])
        if not evals:
            continue
        base = dict(zip(KEY, key, strict=True))
        acc = np.array([e["data"]["accuracy"] for e in evals]) * 100.0
        first = evals[0]["data"]
        hosts = [h["data"] for h in kinds.get("check", [])]
        notes = ["synthetic data"] if first.get("synthetic") else []
        how = [f"accuracy: {first['how_measured']}"] if first.get("how_measured") else []
        if hosts and hosts[0].get("how_measured"):
            how.append(f"C check: {hosts[0]['how_measured']}")
        base.update(
            params=first["params"], macs=first["macs"], runs=len(evals),
            accuracy_mean=float(acc.mean()), accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            param_bytes=first["param_bytes"],
            c_accuracy_mean=_mean(h.get("c_accuracy", None) for h in hosts) * 100.0 if hosts else np.nan,
            c_matches_reference=_mean(h["matches"] for h in hosts) if hosts else np.nan,
            activation_bytes_pools=hosts[0].get("activation_bytes_pools") if hosts else np.nan,
            activation_bytes_planned=hosts[0].get("activation_bytes_planned") if hosts else np.nan,
        )
        for board in boards:
            measured = kinds.get(board, [])
            row = {**base, "framework": "microai", "board": board, "how_measured": "; ".join(how)}
            if measured:
                m = measured[0]["data"]
                row.update({f: m.get(f) for f in BOARD_FIELDS})
                row["how_measured"] = "; ".join(how + ([m["how_measured"]] if m.get("how_measured") else []))
                row["note"] = "; ".join(notes + ([m["note"]] if m.get("note") else []))
            else:
                row["note"] = "; ".join(notes + ["not measured on this board"])
            rows.append(row)
        for (framework, board), reason in (unavailable or {}).items():
            rows.append({**{k: base[k] for k in (*KEY, "params", "macs")}, "framework": framework,
                         "board": board, "note": "; ".join(notes + [f"unavailable: {reason}"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def paper_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Tables A3-A5: ROM (KiB), time (ms) and energy (uWh) against filters, one row per
    dataset / model / framework / board / precision / metric, with the rows' ``how_measured``."""
    long = pd.concat(
        [table[[*PAPER_KEY, "filters"]].assign(metric=name, value=table[column] * scale)
         for name, (column, scale) in PAPER_METRICS.items()],
        ignore_index=True,
    )
    wide = long.pivot_table(index=[*PAPER_KEY, "metric"], columns="filters", values="value", aggfunc="first")
    wide.columns = [f"F{c}" for c in wide.columns]
    how = table.groupby(PAPER_KEY)["how_measured"].agg(lambda s: " | ".join(dict.fromkeys(s.dropna())))
    return wide.reset_index().join(how, on=PAPER_KEY)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Atomic CSV write (a failed aggregation leaves the previous table untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
