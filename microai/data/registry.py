"""The two pipeline stages of every dataset: download (raw files + manifest) and prepare (.npz)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from microai.data import fsdd, gtsrb, smnist, synthetic_har, uci_har
from microai.data.archive import fetch, location_problem, sha256_of
from microai.data.atomic import atomic_output
from microai.data.errors import DatasetError
from microai.data.prepared import PreparedDataset, save_prepared
from microai.data.sources import resolve_sources
from microai.data.spec import DatasetSpec

MANIFEST_NAME = "manifest.json"

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (synthetic_har.SPEC, uci_har.SPEC, smnist.SPEC, fsdd.SPEC, gtsrb.SPEC)
}


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


def download_dataset(name: str, cfg: dict[str, Any], raw_dir: Path) -> Path:
    """Fetch the dataset's official files into ``raw_dir`` (sha256-verified) and write its manifest.

    The manifest (``raw_dir/manifest.json``) lists every file with its key, source, sha256 and
    size; for a generated dataset it records the generator options instead. It is written last,
    so its presence means the download completed. Returns the manifest path.
    """
    spec = dataset_spec(name)
    cfg = cfg or {}  # an empty YAML section reads as None
    options = spec.options_from(cfg)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"dataset": name, "synthetic": spec.synthetic}
    if spec.synthetic:
        manifest["generator"] = options
    else:
        manifest["files"] = [fetch(source, raw_dir) for source in resolve_sources(name, spec.files, cfg)]
    path = raw_dir / MANIFEST_NAME
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def why_unobtainable(name: str, cfg: dict[str, Any], timeout_s: float = 5.0) -> str | None:
    """Why the download stage could not get ``name``'s files from here, or None when it can.

    Checked before a run starts (Snakemake's dry run too), so that a sweep stops with one message
    naming every dataset it cannot obtain instead of failing hours later: a local path or
    ``file://`` URL must exist; the host of a network URL must accept a connection.
    """
    spec = dataset_spec(name)
    if spec.synthetic:
        return None
    try:
        sources = resolve_sources(name, spec.files, cfg or {})
    except DatasetError as exc:
        return str(exc)
    hint = (f"set datasets.{name}.path to a local copy of the official file" if len(sources) == 1 else
            f"set datasets.{name}.local_dir to a folder holding the official files (or files.<key>.path)")
    for source in sources:
        problem = location_problem(source.location, timeout_s)
        if problem:
            return f"{source.filename}: {problem}; {hint}"
    return None


def read_manifest(name: str, raw_dir: Path) -> dict[str, Any]:
    path = Path(raw_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing: run the download stage for {name!r} first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable manifest ({exc})") from exc
    if manifest.get("dataset") != name:
        raise DatasetError(f"{path} describes dataset {manifest.get('dataset')!r}, not {name!r}")
    return manifest


def verified_files(spec: DatasetSpec, manifest: dict[str, Any], raw_dir: Path) -> dict[str, Path]:
    """Every file of the manifest by key, after checking it is complete and unchanged on disk."""
    location = Path(raw_dir) / MANIFEST_NAME
    try:
        entries = {e["key"]: (Path(raw_dir) / e["filename"], e["sha256"]) for e in manifest["files"]}
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{location}: malformed file list ({exc!r})") from exc
    needed = {f.key for f in spec.files}
    if set(entries) != needed:
        raise DatasetError(
            f"{location} lists files {sorted(entries)}, {spec.name} needs {sorted(needed)}: "
            "re-run the download stage"
        )
    for path, expected in entries.values():
        if not path.is_file():
            raise DatasetError(f"{path} listed in {location} is missing: re-run the download stage")
        actual = sha256_of(path)
        if actual != expected:
            raise DatasetError(f"{path} changed since download: sha256 expected {expected}, got {actual}")
    return {key: path for key, (path, _) in entries.items()}


def prepare_dataset(name: str, cfg: dict[str, Any], raw_dir: Path, out_npz: Path) -> Path:
    """Build the normalized train/test arrays from ``raw_dir`` and write ``out_npz`` atomically.

    The official split is kept; inputs are z-scored per channel with training-set statistics.
    """
    spec = dataset_spec(name)
    options = spec.options_from(cfg or {})
    manifest = read_manifest(name, raw_dir)
    if spec.synthetic:
        if manifest.get("generator") != options:
            raise DatasetError(
                f"{Path(raw_dir) / MANIFEST_NAME} was written for generator options "
                f"{manifest.get('generator')}, but datasets.{name} now says {options}: "
                "re-run the download stage"
            )
        provenance: dict[str, Any] = {"dataset": name, "synthetic": True, "source": "generated",
                                      "generator": options, "checksums": {}}
        files: dict[str, Path] = {}
    else:
        files = verified_files(spec, manifest, raw_dir)
        provenance = {
            "dataset": name,
            "synthetic": False,
            "source": {e["filename"]: e["source"] for e in manifest["files"]},
            "checksums": {e["filename"]: e["sha256"] for e in manifest["files"]},
            "unverified": {e["filename"]: e["verification"] for e in manifest["files"]
                           if e.get("verification", "sha256") != "sha256"},
            "options": dict(options),
        }
    try:
        splits = spec.build(options, files)
    except DatasetError as exc:
        raise DatasetError(f"{exc}{_origins(str(exc), manifest)}") from exc
    return save_prepared(PreparedDataset.from_splits(splits, provenance), Path(out_npz))


def _origins(message: str, manifest: dict[str, Any]) -> str:
    """Where the raw files a preparation error names came from: the user's archive, not the copy."""
    origins = [f"{e['filename']} is the download stage's copy of {e['source']}"
               for e in manifest.get("files", []) if e["filename"] in message]
    return f" [{'; '.join(origins)}]" if origins else ""
