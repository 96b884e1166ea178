"""Aggregate per-run JSON results into the long-format results table and the paper's A3-A5 layout.

Per-run results live at ``results/runs/<dataset>/<model>-f<filters>/run<run>/<precision>.<kind>.json``
with kind ``eval`` (accuracy, reference executor), ``check`` (generated C built on the host, whole
test set) or a board name (firmware measurement). Another framework's results sit in a folder named
after it: ``run<run>/tflite-micro/<precision>.eval.json`` (TFLM host runtime) and
``run<run>/tflite-micro/<precision>.<board>.json``. Nothing here invents a number: a missing
measurement is an empty cell with the reason in ``note``.
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
    "activation_bytes_pools", "activation_bytes_planned", "arena_bytes", "rom_bytes", "ram_bytes",
    "instructions", "cycles", "ms", "energy_uwh", "host_wall_ms", "est_cycles", "est_ms", "est_energy_uwh",
    "outputs_match_reference", "microai_c_matches_tflm", "how_measured", "note",
]
KEY = ["dataset", "model", "filters", "precision"]
_PATH = re.compile(r"(?P<dataset>[^/]+)/(?P<model>[^/]+)-f(?P<filters>\d+)/run(?P<run>\d+)/"
                   r"(?:(?P<framework>[^/]+)/)?(?P<precision>[^/]+?)\.(?P<kind>[^./]+)\.json$")
#: The framework of results stored directly in a run folder.
OWN_FRAMEWORK = "microai"
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
                             "(<dataset>/<model>-f<F>/run<i>/[<framework>/]<precision>.<kind>.json)")
        ids = m.groupdict()
        ids["filters"], ids["run"] = int(ids["filters"]), int(ids["run"])
        ids["framework"] = ids["framework"] or OWN_FRAMEWORK
        records.append({**ids, "data": json.loads(path.read_text()), "path": str(path)})
    return records


def _mean(values: Iterable[float]) -> float:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else float("nan")


def results_table(records: list[dict[str, Any]], boards: list[str],
                  unavailable: dict[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """Long-format table: one row per dataset x model x filters x precision x framework x board.

    A framework's rows come from its own records (``eval`` for accuracy, one per board for the
    measurements). ``unavailable`` maps (framework, board) to a reason: those rows keep their
    accuracy, if any, and say ``note = "unavailable: <reason>"`` instead of board figures. A
    framework without any record gets such a row for every model and precision of ``microai``.
    """
    unavailable = unavailable or {}
    groups: dict[tuple, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    for r in records:
        key = tuple(r[k] for k in KEY)
        groups.setdefault(key, {}).setdefault(r["framework"], {}).setdefault(r["kind"], []).append(r)
    measured = {f for by_fw in groups.values() for f, kinds in by_fw.items() if kinds.get("eval")}
    rows = []
    for key, by_framework in sorted(groups.items()):
        ours = by_framework.get(OWN_FRAMEWORK, {})
        if not ours.get("eval"):
            continue
        for framework in sorted(by_framework, key=lambda f: (f != OWN_FRAMEWORK, f)):
            if by_framework[framework].get("eval"):
                rows += _framework_rows(key, framework, by_framework[framework], boards, unavailable)
        identity = _base(key, ours)
        for (framework, board), reason in unavailable.items():
            if framework not in measured:
                notes = ["synthetic data"] if ours["eval"][0]["data"].get("synthetic") else []
                rows.append({**{k: identity[k] for k in (*KEY, "params", "macs")}, "framework": framework,
                             "board": board, "note": "; ".join(notes + [f"unavailable: {reason}"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def _base(key: tuple, kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The board-independent columns of one framework's model: identity, accuracy, host checks."""
    evals = kinds["eval"]
    base = dict(zip(KEY, key, strict=True))
    acc = np.array([e["data"]["accuracy"] for e in evals]) * 100.0
    first = evals[0]["data"]
    hosts = [h["data"] for h in kinds.get("check", [])]
    base.update(
        params=first["params"], macs=first["macs"], runs=len(evals),
        accuracy_mean=float(acc.mean()), accuracy_std=float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        param_bytes=first.get("param_bytes"),
        c_accuracy_mean=_mean(h.get("c_accuracy", None) for h in hosts) * 100.0 if hosts else np.nan,
        c_matches_reference=_mean(h["matches"] for h in hosts) if hosts else np.nan,
        activation_bytes_pools=hosts[0].get("activation_bytes_pools") if hosts else np.nan,
        activation_bytes_planned=hosts[0].get("activation_bytes_planned") if hosts else np.nan,
        arena_bytes=first.get("arena_bytes"),
        # tflite-micro int8 rows: MicroAI's C of the same .tflite equal to the TFLM host runtime's outputs
        microai_c_matches_tflm=_mean(e["data"].get("microai_c_matches_tflm") for e in evals),
    )
    return base


def _framework_rows(key: tuple, framework: str, kinds: dict[str, list[dict[str, Any]]], boards: list[str],
                    unavailable: dict[tuple[str, str], str]) -> list[dict[str, Any]]:
    base = _base(key, kinds)
    first = kinds["eval"][0]["data"]
    hosts = [h["data"] for h in kinds.get("check", [])]
    notes = ["synthetic data"] if first.get("synthetic") else []
    how = [f"accuracy: {first['how_measured']}"] if first.get("how_measured") else []
    if hosts and hosts[0].get("how_measured"):
        how.append(f"C check: {hosts[0]['how_measured']}")
    rows = []
    for board in boards:
        measured = kinds.get(board, [])
        row = {**base, "framework": framework, "board": board, "how_measured": "; ".join(how)}
        if (framework, board) in unavailable:
            row["note"] = "; ".join(notes + [f"unavailable: {unavailable[framework, board]}"])
        elif measured:
            m = measured[0]["data"]
            row.update({f: m.get(f) for f in BOARD_FIELDS})
            row["how_measured"] = "; ".join(how + ([m["how_measured"]] if m.get("how_measured") else []))
            row["note"] = "; ".join(notes + ([m["note"]] if m.get("note") else []))
        else:
            row["note"] = "; ".join(notes + ["not measured on this board"])
        rows.append(row)
    return rows


#: Ratios MicroAI / TFLite Micro of the paper layout: metric -> table column (same run, same precision).
RATIOS = {"est_cycles_ratio": "est_cycles", "rom_ratio": "rom_bytes", "ram_ratio": "ram_bytes"}
PEER_FRAMEWORK = "tflite-micro"
RATIO_FRAMEWORK = f"{OWN_FRAMEWORK} / {PEER_FRAMEWORK}"
RATIO_HOW = ("ratio of the two frameworks' rows of this run: estimated cycles (Cortex-M4 timing model), "
             "ROM and RAM of their ELFs (see those rows' how_measured)")


def paper_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Tables A3-A5: ROM (KiB), time (ms) and energy (uWh) against filters, one row per
    dataset / model / framework / board / precision / metric, with the rows' ``how_measured``; then,
    framework "microai / tflite-micro", the ratios :data:`RATIOS` of the two frameworks' figures for
    the same dataset, model, board and precision (int8 vs int8, float32 vs float32)."""
    long = pd.concat(
        [table[[*PAPER_KEY, "filters"]].assign(metric=name, value=table[column] * scale)
         for name, (column, scale) in PAPER_METRICS.items()] + [_ratios(table)],
        ignore_index=True,
    )
    wide = long.pivot_table(index=[*PAPER_KEY, "metric"], columns="filters", values="value", aggfunc="first")
    wide.columns = [f"F{c}" for c in wide.columns]
    how = table.groupby(PAPER_KEY)["how_measured"].agg(lambda s: " | ".join(dict.fromkeys(s.dropna())))
    wide = wide.reset_index().join(how, on=PAPER_KEY)
    wide.loc[wide.framework == RATIO_FRAMEWORK, "how_measured"] = RATIO_HOW
    return wide


def _ratios(table: pd.DataFrame) -> pd.DataFrame:
    keys = ["dataset", "model", "board", "precision", "filters"]
    ours = table[table.framework == OWN_FRAMEWORK].set_index(keys)
    peer = table[table.framework == PEER_FRAMEWORK].set_index(keys)
    both = ours.merge(peer, left_index=True, right_index=True, suffixes=("", "_peer"))
    parts = [pd.DataFrame({"metric": name, "framework": RATIO_FRAMEWORK,
                           "value": both[col].astype(float) / both[f"{col}_peer"].astype(float)},
                          index=both.index).reset_index()
             for name, col in RATIOS.items()]
    return pd.concat(parts, ignore_index=True)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Atomic CSV write (a failed aggregation leaves the previous table untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
