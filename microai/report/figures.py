"""The paper's figures from results/tables.csv: accuracy, ROM and time against the number of filters."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import pandas as pd  # noqa: E402

#: (column, axis label, board whose rows are plotted: None = any, accuracy is board-independent)
PANELS = [
    ("accuracy_mean", "test accuracy (%)", None),
    ("rom_bytes", "ROM (KiB)", "qemu-m4"),
    ("est_ms", "ms per inference @48 MHz (estimated)", "qemu-m4"),
]


def summary_figure(table: pd.DataFrame, out_png: Path) -> None:
    """One row of panels per dataset x model; one line per precision (MicroAI rows only)."""
    ours = table[table.framework == "microai"]
    groups = list(ours.groupby(["dataset", "model"]))
    fig, axes = plt.subplots(len(groups), len(PANELS), figsize=(4.2 * len(PANELS), 3.2 * len(groups)),
                             squeeze=False)
    for row, ((dataset, model), df) in enumerate(groups):
        synthetic = df.note.fillna("").str.contains("synthetic data").any()
        for col, (column, label, board) in enumerate(PANELS):
            ax = axes[row][col]
            data = df if board is None else df[df.board == board]
            filters = sorted(df["filters"].unique())
            precisions = list(data.groupby("precision"))
            # precisions side by side around each filter count, so that error bars do not hide each other
            dodge = 0.02 * (filters[-1] - filters[0] or 16)
            for i, (precision, d) in enumerate(precisions):
                d = d.drop_duplicates("filters").sort_values("filters")
                y = d[column] / 1024.0 if column == "rom_bytes" else d[column]
                err = d["accuracy_std"] if column == "accuracy_mean" else None
                x = d["filters"] + (i - (len(precisions) - 1) / 2) * dodge
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=precision)
            ax.set_xticks(filters)
            if len(filters) == 1:
                ax.set_xlim(filters[0] - 1, filters[0] + 1)
            ax.set_xlabel("filters")
            ax.set_ylabel(label)
            title = f"{dataset}{' (synthetic data)' if synthetic else ''}, {model}"
            ax.set_title(title + (f"\n{board}" if board else ""), fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(out_png.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out_png)
