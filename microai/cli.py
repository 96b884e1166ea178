"""Shared plumbing of the stage scripts in workflow/scripts: argument parsing and error reporting."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microai.config import load_params, stage_threads
from microai.data.errors import DatasetError

#: Failures a user can act on from the message alone (bad input, missing tool, a limit): no traceback.
EXPECTED_ERRORS = (ValueError, OSError, RuntimeError, TimeoutError, DatasetError)


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description)


def params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="parameters file (Snakemake passes the effective, merged configuration)")


def threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="threads for the numerics (Snakemake passes the rule's; default: the parameters'"
                        " resources.stages.<stage>.threads, else resources.default.threads, else 1)")


def measure_stage(description: str, model: str, compile_stage: str, flash_stage: str,
                  measure: Callable[..., object]) -> None:
    """The command line of a measure stage (measure, measure_tflm): the board, its build and flash records,
    ``model`` (--graph or --tflite), the data, the qemu-m4 build that estimates an unattached real board,
    the result file; then ``measure(board, its params.yaml settings, build, flash, model, data, timeout,
    out, emulated_elf=...)``."""
    p = parser(description)
    params_arg(p)
    p.add_argument("--board", required=True)
    p.add_argument("--build", type=Path, required=True, help=f"build.json of the {compile_stage} stage")
    p.add_argument("--flash", type=Path, required=True, help=f"flash.json of the {flash_stage} stage")
    p.add_argument(f"--{model}", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--emulated-elf", type=Path, default=None,
                   help="qemu-m4 build of the same model (estimates a real board that is not attached)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    params = load(args)
    measure(args.board, params.get("boards", {}).get(args.board, {}), args.build, args.flash,
            getattr(args, model), args.data, params["deploy"]["timeout_s"], args.out,
            emulated_elf=args.emulated_elf)


def threads(args: argparse.Namespace, params: dict[str, Any], stage: str) -> int:
    """--threads, or the configuration's threads for ``stage`` (how DVC runs get theirs)."""
    return args.threads if args.threads is not None else stage_threads(params, stage)


def load(args: argparse.Namespace) -> dict[str, Any]:
    return load_params(args.params)


def run(main: Callable[[], object]) -> None:
    """Run a stage; an expected failure prints its cause and exits 1 (no traceback).

    The cause goes to stderr, which the workflow rules send to the stage's log, and also to
    stdout when that is elsewhere, i.e. to the terminal Snakemake or DVC runs in.
    """
    try:
        main()
    except EXPECTED_ERRORS as err:
        report_error(f"error: {type(err).__name__}: {err}")
        sys.exit(1)


def report_error(message: str) -> None:
    """Print ``message`` on stderr, and on stdout unless both are the same file."""
    print(message, file=sys.stderr, flush=True)
    if not _same_file(sys.stdout, sys.stderr):
        print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stdout, flush=True)


def _same_file(a: Any, b: Any) -> bool:
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
