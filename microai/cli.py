"""Shared plumbing of the stage scripts in workflow/scripts: argument parsing and error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microai.config import load_params, stage_resources


def parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=description)


def params_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="parameters file (Snakemake passes the effective, merged configuration)")


def threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help="threads for the numerics (Snakemake passes the rule's; default: the parameters'"
                        " resources.stages.<stage>.threads, else resources.default.threads, else 1)")


def threads(args: argparse.Namespace, params: dict[str, Any], stage: str) -> int:
    """--threads, or the configuration's threads for ``stage`` (how DVC runs get theirs)."""
    return args.threads if args.threads is not None else stage_resources(params, stage).get("threads", 1)


def load(args: argparse.Namespace) -> dict[str, Any]:
    return load_params(args.params)


def run(main: Callable[[], object]) -> None:
    """Run a stage; expected failures print one clear line on stderr and exit 1 (no traceback)."""
    try:
        main()
    except (ValueError, OSError, RuntimeError, TimeoutError) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
