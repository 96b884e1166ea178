"""params.yaml: loading, schema validation with messages that name the bad key, section access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "params.schema.yaml"


class ConfigError(ValueError):
    """A params file that is unreadable or does not match the schema."""


def _key_path(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def validate_params(params: dict[str, Any], source: str = "params.yaml") -> None:
    """Raise ConfigError naming the first offending key (all errors are listed)."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{source}: {_key_path(e.absolute_path)}: {e.message}" for e in errors]
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(lines))
    _check_references(params, source)


def _check_references(params: dict[str, Any], source: str) -> None:
    """Every swept name must have its section (a dataset needs data, train and qat settings...)."""
    sweep = params["sweep"]
    needs = {"datasets": ("datasets", "train"), "precisions": ("precisions",)}
    for dim, sections in needs.items():
        for name in sweep[dim]:
            for sec in sections:
                if name not in params.get(sec, {}):
                    raise ConfigError(f"{source}: sweep.{dim} lists '{name}' but {sec}.{name} is not defined")
    extra_runs = sorted(set(params["deploy"]["runs"]) - set(sweep["runs"]))
    if extra_runs:
        raise ConfigError(f"{source}: deploy.runs lists run(s) {extra_runs} that sweep.runs does not")
    for prec in sweep["precisions"]:
        if params["precisions"][prec]["method"] == "qat":
            for ds in sweep["datasets"]:
                if ds not in params.get("qat", {}):
                    raise ConfigError(f"{source}: precision '{prec}' uses QAT but qat.{ds} is not defined")


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a params YAML file."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read parameters: {e}") from e
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    validate_params(params, str(path))
    return params


def stage_resources(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """The configuration's threads / mem_mb / runtime for ``stage``: its entry over ``default``."""
    res = params.get("resources", {})
    return {**res.get("default", {}), **res.get("stages", {}).get(stage, {})}


def stage_threads(params: dict[str, Any], stage: str) -> int:
    """The threads the configuration gives ``stage`` (1 when it says nothing)."""
    return stage_resources(params, stage).get("threads", 1)


def section(params: dict[str, Any], *keys: str) -> Any:
    """``section(p, "train", "uci-har")`` -> ``p["train"]["uci-har"]`` with an error naming the key."""
    node: Any = params
    walked = []
    for k in keys:
        walked.append(k)
        if not isinstance(node, dict) or k not in node:
            raise ConfigError(f"parameters have no section '{'.'.join(walked)}'")
        node = node[k]
    return node


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically so a failed stage leaves no half-written result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
