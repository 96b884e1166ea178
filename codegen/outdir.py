"""The output folder of ``convert()``: codegen writes only where it may, and removes only what it wrote.

A folder is a codegen output when it holds a ``codegen_report.json`` whose ``files`` lists what that
run generated (the report is the marker). Writing into ``outdir``:

* a missing folder is written beside it and renamed into place (it appears complete, with the
  usual umask permissions);
* an empty folder, or a previous codegen output, gets each generated file replaced atomically;
  files the previous run generated and this one does not are removed; anything else stays;
* any other non-empty folder is refused unless ``force``: then the generated files are written into
  it and nothing else in it is touched. A file at ``outdir`` is always refused.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from codegen.errors import CodegenError


def check_outdir(outdir: Path, report_name: str, force: bool = False) -> None:
    """Raise CodegenError if codegen may not write into ``outdir``."""
    if outdir.exists() and not outdir.is_dir():
        raise CodegenError(f"{outdir} is a file, not a folder: codegen does not replace it")
    foreign = outdir.is_dir() and any(outdir.iterdir()) and previous_outputs(outdir, report_name) is None
    if foreign and not force:
        raise CodegenError(
            f"{outdir} is not empty and is not a codegen output (it has no {report_name}): choose "
            f"another folder, or pass --force (force=True) to write the generated files into it "
            f"(nothing else in it is touched)")


def previous_outputs(outdir: Path, report_name: str) -> set[str] | None:
    """The file names a previous codegen run wrote into ``outdir`` (None: not a codegen output)."""
    try:
        files = json.loads((outdir / report_name).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, list):
        return None
    return {f for f in files if isinstance(f, str) and f not in ("", ".", "..") and Path(f).name == f}


def write_outdir(outdir: Path, texts: dict[str, str], report_name: str, force: bool = False) -> None:
    """Write ``texts`` (file name -> content) into ``outdir``; the report is written last."""
    check_outdir(outdir, report_name, force)
    previous = (previous_outputs(outdir, report_name) if outdir.is_dir() else None) or set()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = outdir.parent / f".{outdir.name}.{uuid.uuid4().hex}.part"
    staging.mkdir()  # mode 0o777 minus the umask, unlike tempfile.mkdtemp's 0o700
    try:
        for name, text in texts.items():
            (staging / name).write_text(text)
        if not outdir.exists():
            staging.rename(outdir)
            return
        for name in texts:
            if name != report_name:
                os.replace(staging / name, outdir / name)
        for stale in previous - set(texts):
            (outdir / stale).unlink(missing_ok=True)
        os.replace(staging / report_name, outdir / report_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
