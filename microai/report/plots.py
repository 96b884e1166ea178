"""Plot data and metrics from the long results table (results/tables.csv).

The plot data are small CSVs, one per figure family of the paper, read both by the figures
(microai.report.figures) and by ``dvc plots``; the metrics (results/metrics.json) are what
``dvc metrics show/diff`` and ``dvc exp show`` list. Every value is a column of the results
table: nothing is computed here that the table does not hold.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

#: Per-board columns of the metrics, as in the results table.
BOARD_METRICS = ("rom_bytes", "ram_bytes", "instructions", "est_cycles", "est_ms", "est_energy_uwh")


def _measured(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of a framework x board that produced numbers (unavailable rows have no ROM)."""
    return table[table.rom_bytes.notna()]


def accuracy_vs_filters(table: pd.DataFrame) -> pd.DataFrame:
    """Figures 5/7/9 (and 6/8/10 with param_kib): accuracy of each precision against the filters;
    another framework's precisions (e.g. TFLite's int8 in the TFLM host runtime) are series of their own."""
    acc = table[table.accuracy_mean.notna()].drop_duplicates(["dataset", "model", "filters", "framework",
                                                              "precision"])
    out = acc[["dataset", "model", "framework", "precision", "filters", "params", "param_bytes", "runs",
               "accuracy_mean", "accuracy_std"]].copy()
    ours = out.framework == "microai"
    out.insert(2, "series", out.precision.where(ours, out.framework + " " + out.precision))
    out["param_kib"] = out.pop("param_bytes") / 1024.0
    return out.sort_values(["dataset", "model", "series", "filters"]).reset_index(drop=True)


def deployment_vs_filters(table: pd.DataFrame) -> pd.DataFrame:
    """Tables A3-A5: ROM (KiB), estimated time (ms) and energy (uWh) against the filters, one
    series per framework x board x precision."""
    m = _measured(table)
    out = m[["dataset", "model", "framework", "board", "precision", "filters"]].copy()
    out.insert(2, "series", m.framework + " " + m.precision + " " + m.board)
    out["rom_kib"] = m.rom_bytes / 1024.0
    out["ram_kib"] = m.ram_bytes / 1024.0
    out["est_ms"] = m.est_ms
    out["est_energy_uwh"] = m.est_energy_uwh
    return out.sort_values(["dataset", "model", "series", "filters"]).reset_index(drop=True)


def deployment_at_max_filters(table: pd.DataFrame) -> pd.DataFrame:
    """Figures 11-13: the same columns at the largest swept number of filters of each dataset x model."""
    rows = deployment_vs_filters(table)
    largest = rows.groupby(["dataset", "model"]).filters.transform("max")
    return rows[rows.filters == largest].reset_index(drop=True)


def plot_data(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every plot data file by name (microai.report.PLOT_DATA)."""
    acc = accuracy_vs_filters(table)
    return {
        "accuracy_vs_filters": acc.drop(columns="param_kib"),
        "accuracy_vs_param_kib": acc,
        "deployment_at_max_filters": deployment_at_max_filters(table),
        "deployment_vs_filters": deployment_vs_filters(table),
    }


def _number(value: Any) -> float | int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def metrics(table: pd.DataFrame) -> dict[str, Any]:
    """``{dataset: {<model>-f<F>: {framework: {precision: {accuracy..., <board>: {rom_bytes...}}}}}}``:
    accuracy per precision (reference executor, mean and std over the runs), ROM, RAM and cycles
    per board. Empty cells are left out."""
    out: dict[str, Any] = {}
    for row in table.itertuples(index=False):
        node = out.setdefault(row.dataset, {}).setdefault(f"{row.model}-f{row.filters}", {})
        entry = node.setdefault(row.framework, {}).setdefault(row.precision, {})
        if row.board == table.board.iloc[0]:  # board-independent columns, once
            for key in ("accuracy_mean", "accuracy_std", "runs", "c_matches_reference", "arena_bytes"):
                if (value := _number(getattr(row, key))) is not None:
                    entry[key] = value
        board = {k: v for k in BOARD_METRICS if (v := _number(getattr(row, k))) is not None}
        if board:
            entry[row.board] = board
    return _prune(out)


def _prune(node: Any) -> Any:
    if isinstance(node, dict):
        kept = {k: _prune(v) for k, v in node.items()}
        return {k: v for k, v in kept.items() if v != {}}
    return node

