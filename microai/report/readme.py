"""The README's default-run table, written from a real ``results/tables.csv`` (never typed by hand).

``make run`` records its wall time, the machine and the commit next to the table it produced
(:func:`record_run`, in ``logs/``, outside every byte-reproducible artifact); ``make readme-table``
renders the table's MicroAI rows on one board with that record (:func:`default_run_block`) and
replaces the block between the two markers of README.md (:func:`replace_block`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd

BEGIN = "<!-- default-run-table: begin (written by `make readme-table`, do not edit) -->"
END = "<!-- default-run-table: end -->"


class ReadmeError(ValueError):
    """README markers or a run record that do not fit the table."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def machine() -> str:
    """``x86_64, 2 CPUs (Intel(R) Xeon(R) ...), Linux 6.1``: what a reader needs to compare timings."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = f" ({line.split(':', 1)[1].strip()})"
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} CPUs{model}, {platform.system()} {platform.release()}"


def record_run(table: Path, started: float, cores: str, commit: str, out: Path,
               tflm_tree: str | None = None) -> bool:
    """After ``make run``: record its wall time, cores, machine, the commit it started from
    (``git describe --always --dirty``), the TFLite Micro tree it was given (MICROAI_TFLM_TREE) and
    the table's sha256.

    Nothing is recorded when the run did not write ``table`` (Snakemake had nothing to do), so the
    record always describes the run that produced the current table. Returns whether it recorded.
    """
    table = Path(table)
    if not table.is_file() or table.stat().st_mtime < started:
        return False
    finished = time.time()
    record = {"wall_s": round(finished - started, 1), "cores": cores, "machine": machine(),
              "commit": commit, "date": time.strftime("%Y-%m-%d", time.localtime(finished)),
              "tflm_tree": tflm_tree or None, "table": str(table), "table_sha256": _sha256(table)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return True


def _cell(value: Any, fmt: str) -> str:
    return "-" if pd.isna(value) else format(value, fmt)


def default_run_block(table_csv: Path, record: dict[str, Any] | None, board: str = "qemu-m4") -> str:
    """Markdown: how the run was made, then one row per framework / dataset / model / filters /
    precision that has an accuracy, on ``board``."""
    table = pd.read_csv(table_csv)
    rows = table[(table.board == board) & table.accuracy_mean.notna()]
    if rows.empty:
        raise ReadmeError(f"{table_csv} has no rows with an accuracy on board {board}")
    if record is not None and record.get("table_sha256") != _sha256(table_csv):
        raise ReadmeError(f"the run record ({record.get('table')}) was written for another {table_csv}: "
                          f"run `make run` again, or drop the record to publish the table without its timing")
    if record is None:
        how = (f"From `{table_csv}`, written on an unrecorded run (wall time, machine and commit unknown: "
               f"`make run` records them).")
    else:
        tree = record.get("tflm_tree")
        command = f"MICROAI_TFLM_TREE={tree} make run" if tree else "make run"
        how = (f"`{command}` on commit `{record['commit']}`, {record['date']}, on {record['machine']}: "
               f"{record['wall_s']:g} s wall time with `--cores {record['cores']}` (after set-up).")
    lines = [BEGIN, how, ""]
    notes = sorted({n for n in rows.note.dropna() for n in n.split("; ") if n == "synthetic data"})
    lines.append(f"Rows on `{board}`{' (' + ', '.join(notes) + ')' if notes else ''}; accuracy: mean +- std "
                 f"over the runs on the test set; time: `est_ms`, estimated by the Cortex-M4 timing model at "
                 f"48 MHz; how each number was obtained: the row's `how_measured` in `{table_csv}`.")
    lines.append("")
    lines.append("| framework | dataset | model | F | precision | runs | test accuracy (%) | C = reference | "
                 "ROM (B) | RAM (B) | TFLM arena (B) | est. ms @48 MHz | outputs on board = reference |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows.sort_values(["framework", "dataset", "model", "filters", "precision"]).itertuples():
        lines.append(
            f"| {r.framework} | {r.dataset} | {r.model} | {r.filters} | {r.precision} | "
            f"{_cell(r.runs, '.0f')} | "
            f"{r.accuracy_mean:.2f} +- {r.accuracy_std:.2f} | {_cell(r.c_matches_reference, 'g')} | "
            f"{_cell(r.rom_bytes, '.0f')} | {_cell(r.ram_bytes, '.0f')} | {_cell(r.arena_bytes, '.0f')} | "
            f"{_cell(r.est_ms, '.1f')} | {_cell(r.outputs_match_reference, 'g')} |")
    lines.append(END)
    return "\n".join(lines)


def replace_block(readme: Path, block: str) -> None:
    """Put ``block`` (which starts with BEGIN and ends with END) in place of the marked one."""
    readme = Path(readme)
    text = readme.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ReadmeError(f"{readme} must hold the two markers once, in order:\n{BEGIN}\n{END}")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    tmp = readme.with_name(readme.name + ".tmp")
    tmp.write_text(before + block + after)
    tmp.replace(readme)


def update_readme(readme: Path, table_csv: Path, record_json: Path | None, board: str = "qemu-m4") -> str:
    """Rewrite README's default-run block from ``table_csv`` and the run record (if present)."""
    record = None
    if record_json is not None and Path(record_json).is_file():
        record = json.loads(Path(record_json).read_text())
    block = default_run_block(Path(table_csv), record, board)
    replace_block(Path(readme), block)
    return block
