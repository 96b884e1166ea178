"""`make readme-table`: README's default-run block is written from a real results table and the record
of the run that produced it, never typed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from microai.report.readme import BEGIN, END, ReadmeError, record_run, update_readme
from microai.report.tables import COLUMNS, write_csv

ROOT = Path(__file__).resolve().parent.parent


def _table(path: Path) -> Path:
    rows = []
    model = {"dataset": "synthetic-har", "model": "resnetv1-6", "filters": 16}
    for precision, acc, std, rom, ms in (("float32", 88.634, 0.48, 20340, 51.94),
                                         ("int8", 88.75, 0.65, 11248, 17.1)):
        for board in ("qemu-m4", "nucleo-l452re-p"):
            rows.append({**model, "precision": precision, "framework": "microai", "board": board, "runs": 2,
                         "accuracy_mean": acc, "accuracy_std": std, "c_matches_reference": 1.0,
                         "rom_bytes": rom + (board != "qemu-m4"), "ram_bytes": 5464, "est_ms": ms,
                         "outputs_match_reference": 1.0, "note": "synthetic data", "how_measured": "..."})
    rows.append({**model, "precision": "int8", "framework": "tflite-micro", "board": "qemu-m4", "runs": 2,
                 "accuracy_mean": 88.62, "accuracy_std": 0.55, "arena_bytes": 10384,
                 "note": "not measured on this board"})
    rows.append({**model, "precision": "int8", "framework": "stm32cubeai", "board": "qemu-m4",
                 "note": "unavailable: not installed"})
    write_csv(pd.DataFrame(rows, columns=COLUMNS), path)
    return path


def _readme(path: Path) -> Path:
    path.write_text(f"# Title\n\nbefore\n{BEGIN}\nold hand-typed table 88.51\n{END}\nafter\n")
    return path


def test_block_is_rewritten_from_the_table_and_the_run_record(tmp_path: Path) -> None:
    table = _table(tmp_path / "results" / "tables.csv")
    record = tmp_path / "logs" / "make-run.json"
    assert record_run(table, time.time() - 120.0, "2", "abc1234+changes", record)
    readme = _readme(tmp_path / "README.md")
    update_readme(readme, table, record)
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{END}\nafter\n")
    assert "88.51" not in text
    model = "| synthetic-har | resnetv1-6 | 16 |"
    assert f"| microai {model} float32 | 2 | 88.63 +- 0.48 | 1 | 20340 | 5464 | - | 51.9 | 1 |" in text
    assert f"| tflite-micro {model} int8 | 2 | 88.62 +- 0.55 | - | - | - | 10384 |" in text
    assert "| int8 | 2 | 88.75 +- 0.65 | 1 | 11248 |" in text and "20341" not in text  # qemu-m4 rows only
    assert "stm32cubeai" not in text and "synthetic data" in text
    facts = json.loads(record.read_text())
    assert "commit `abc1234+changes`" in text and facts["date"] in text and facts["machine"] in text
    assert facts["wall_s"] >= 120 and f"{facts['wall_s']:g} s wall time with `--cores 2`" in text
    assert "`make run` on commit" in text  # no TFLite Micro tree named


def test_the_record_names_the_tflm_tree_the_run_was_given(tmp_path: Path) -> None:
    table = _table(tmp_path / "tables.csv")
    record = tmp_path / "make-run.json"
    assert record_run(table, time.time() - 1.0, "2", "abc1234", record, tflm_tree="../shared/tflm")
    readme = _readme(tmp_path / "README.md")
    update_readme(readme, table, record)
    assert "`MICROAI_TFLM_TREE=../shared/tflm make run` on commit `abc1234`" in readme.read_text()


def test_a_record_of_another_table_is_refused(tmp_path: Path) -> None:
    table = _table(tmp_path / "tables.csv")
    record = tmp_path / "make-run.json"
    record_run(table, time.time() - 1.0, "2", "abc1234", record)
    table.write_text(table.read_text().replace("88.634", "90.0"))
    readme = _readme(tmp_path / "README.md")
    before = readme.read_text()
    with pytest.raises(ReadmeError, match="another"):
        update_readme(readme, table, record)
    assert readme.read_text() == before


def test_a_run_that_did_not_write_the_table_records_nothing(tmp_path: Path) -> None:
    table = _table(tmp_path / "tables.csv")
    assert not record_run(table, time.time() + 60.0, "2", "abc1234", tmp_path / "make-run.json")
    assert not (tmp_path / "make-run.json").exists()


def test_markers_are_required(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ReadmeError, match="markers"):
        update_readme(readme, _table(tmp_path / "tables.csv"), None)


def test_the_command_and_the_repository_readme(tmp_path: Path) -> None:
    """The script the Makefile calls works, and README.md has exactly one block for it."""
    table = _table(tmp_path / "tables.csv")
    readme = _readme(tmp_path / "README.md")
    cmd = [sys.executable, str(ROOT / "workflow" / "scripts" / "readme_table.py"), "update",
           "--table", str(table), "--record", str(tmp_path / "absent.json"), str(readme)]
    subprocess.run(cmd, check=True, capture_output=True)
    assert "unrecorded run" in readme.read_text()
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "readme-table:" in (ROOT / "Makefile").read_text()
