"""Stage aggregate: every per-run result of the sweep into the tables, metrics, plot data and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microai.config import write_json


def aggregate(params: dict[str, Any], runs_dir: Path, out_dir: Path) -> None:
    """The current sweep's results under ``runs_dir`` -> ``out_dir``/tables.csv (long format),
    paper_tables.csv (Tables A3-A5), metrics.json, provenance.json, plots/*.csv and figures/*.png.

    Exactly the files of the sweep in ``params`` are read (microai.pipeline.sweep_results): results
    of an older sweep lying in the same folder do not leak into the table.
    """
    from microai.deploy.frameworks import unavailable_rows
    from microai.pipeline import sweep_results
    from microai.report.figures import write_figures
    from microai.report.plots import metrics, plot_data
    from microai.report.tables import paper_layout, read_results, results_table, write_csv

    files = sweep_results(params, runs_dir)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} result(s) of the sweep are missing, e.g. {missing[:3]}")
    sweep = params["sweep"]
    boards = list(sweep["boards"])
    records = read_results(files)
    unavailable = unavailable_rows(list(sweep.get("frameworks", ["microai"])), boards, params)
    table = results_table(records, boards, unavailable)
    if table.empty:
        raise ValueError("no evaluation results to aggregate")
    out_dir = Path(out_dir)
    write_csv(table, out_dir / "tables.csv")
    write_csv(paper_layout(table), out_dir / "paper_tables.csv")
    write_json(out_dir / "metrics.json", metrics(table))
    write_json(out_dir / "provenance.json", dataset_provenance(records))
    plots = plot_data(table)
    for name, frame in plots.items():
        write_csv(frame, out_dir / "plots" / f"{name}.csv")
    write_figures(plots, out_dir / "figures")


def dataset_provenance(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset, the sources and sha256 of the files its results were computed from (as the
    evaluate stage recorded them), including digests trusted on first use."""
    out: dict[str, Any] = {}
    for r in records:
        if r["kind"] == "eval" and "dataset" in r["data"]:
            out.setdefault(r["dataset"], r["data"]["dataset"])
    return out
