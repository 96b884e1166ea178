"""The paper's figures, drawn from the plot data of microai.report.plots (one PNG per figure family).

One row of panels per dataset x model swept: accuracy against filters (the paper's Figures 5/7/9)
and against parameter memory (6/8/10); ROM, estimated time and estimated energy per framework x
board x precision at the largest swept number of filters (11-13) and against filters (Tables
A3-A5 as plots). A panel without data says why instead of staying blank.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import pandas as pd  # noqa: E402

#: Deployment metrics: plot data column and axis label.
DEPLOYMENT = {
    "rom": ("rom_kib", "ROM (KiB), arm-none-eabi-size"),
    "time": ("est_ms", "ms per inference @48 MHz (estimated)"),
    "energy": ("est_energy_uwh", "energy per inference (uWh, estimated)"),
}


def _panels(groups: list, title: str):
    fig, axes = plt.subplots(len(groups) or 1, 1, figsize=(7.5, 3.6 * max(len(groups), 1)), squeeze=False)
    fig.suptitle(title, fontsize=10)
    return fig, [row[0] for row in axes]


def _save(fig, out_png: Path) -> None:
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(out_png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100, metadata={"Software": None})  # no version string: same inputs, same bytes
    plt.close(fig)
    tmp.replace(out_png)


def _no_data(ax, why: str) -> None:
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def accuracy(data: pd.DataFrame, x: str, xlabel: str, title: str, out_png: Path) -> None:
    """Accuracy (mean +- std over runs) of each precision against ``x`` (series without ``x``, such as
    TFLite models on the parameter-memory axis, are left out)."""
    groups = list(data[data[x].notna()].groupby(["dataset", "model"]))
    fig, axes = _panels(groups, title)
    for ax, ((dataset, model), df) in zip(axes, groups, strict=False):
        series = list(df.groupby("series"))
        span = df[x].max() - df[x].min()
        dodge = 0.012 * (span or df[x].max())  # precisions side by side, so error bars stay visible
        for i, (name, d) in enumerate(series):
            d = d.sort_values(x)
            ax.errorbar(d[x] + (i - (len(series) - 1) / 2) * dodge, d.accuracy_mean, yerr=d.accuracy_std,
                        marker="o", capsize=3, label=name)
        if x == "filters":
            ax.set_xticks(sorted(df.filters.unique()))
        if span == 0:
            ax.set_xlim(df[x].min() * 0.9, df[x].max() * 1.1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{dataset}, {model} ({int(df.runs.max())} runs)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if not groups:
        _no_data(axes[0], "no accuracy results")
    _save(fig, out_png)


def at_max_filters(data: pd.DataFrame, metric: str, out_png: Path) -> None:
    """One horizontal bar per framework x board x precision at the largest swept filter count."""
    column, label = DEPLOYMENT[metric]
    groups = list(data.groupby(["dataset", "model"]))
    fig, axes = _panels(groups, f"{label} at the largest swept number of filters")
    for ax, ((dataset, model), df) in zip(axes, groups, strict=False):
        df = df[df[column].notna()].sort_values(["framework", "board", "precision"])
        ax.set_title(f"{dataset}, {model}, F = {int(df.filters.max()) if len(df) else '?'}", fontsize=9)
        if df.empty:
            _no_data(ax, f"no {metric} figure for any swept board (see results/tables.csv, column note)")
            continue
        colors = {p: f"C{i}" for i, p in enumerate(sorted(df.precision.unique()))}
        ax.barh(range(len(df)), df[column], color=[colors[p] for p in df.precision])
        ax.set_yticks(range(len(df)), df.series, fontsize=8)
        for y, v in enumerate(df[column]):
            ax.text(v, y, f" {v:.4g}", va="center", fontsize=7)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, axis="x")
    if not groups:
        _no_data(axes[0], "no deployment results")
    _save(fig, out_png)


def vs_filters(data: pd.DataFrame, metric: str, out_png: Path) -> None:
    """One line per framework x board x precision against the number of filters."""
    column, label = DEPLOYMENT[metric]
    groups = list(data.groupby(["dataset", "model"]))
    fig, axes = _panels(groups, f"{label} against the number of filters")
    for ax, ((dataset, model), df) in zip(axes, groups, strict=False):
        ax.set_title(f"{dataset}, {model}", fontsize=9)
        df = df[df[column].notna()]
        if df.empty:
            _no_data(ax, f"no {metric} figure for any swept board (see results/tables.csv, column note)")
            continue
        for name, d in df.groupby("series"):
            d = d.sort_values("filters")
            ax.plot(d.filters, d[column], marker="o", label=name)
        ax.set_xticks(sorted(df.filters.unique()))
        ax.set_xlabel("filters")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if not groups:
        _no_data(axes[0], "no deployment results")
    _save(fig, out_png)


def write_figures(plots: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """Every figure of microai.report.FIGURES into ``out_dir``."""
    out_dir = Path(out_dir)
    accuracy(plots["accuracy_vs_filters"], "filters", "filters",
             "Test accuracy against the number of filters (paper Figures 5/7/9)",
             out_dir / "accuracy_vs_filters.png")
    accuracy(plots["accuracy_vs_param_kib"], "param_kib", "parameter memory (KiB)",
             "Test accuracy against parameter memory (paper Figures 6/8/10)",
             out_dir / "accuracy_vs_param_memory.png")
    for metric in DEPLOYMENT:
        at_max_filters(plots["deployment_at_max_filters"], metric, out_dir / f"{metric}_at_max_filters.png")
        vs_filters(plots["deployment_vs_filters"], metric, out_dir / f"{metric}_vs_filters.png")
