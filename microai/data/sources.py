"""From a dataset's params.yaml section to the list of files to fetch.

Each dataset declares its official files (:class:`OfficialFile`: URL and, where it is known,
sha256). The section may override them:

* single-file datasets: ``url``, ``path`` (a local mirror; wins over ``url``) and ``sha256``
  at the top of the section;
* every dataset: ``files: {<key>: {url, path, sha256}}`` per file, and ``local_dir``, a folder
  holding the files under their official names.

``sha256`` set to a digest verifies against it; ``sha256: null`` explicitly skips verification
(a warning is emitted and the manifest records the digest actually fetched). A file whose
official digest is unknown (smnist, gtsrb, fsdd: their publishers give none) and whose section
pins none is trusted on first use: the download warns with the digest it saw, and the manifest,
the prepared data and the results' provenance record it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microai.data.archive import Source
from microai.data.errors import DatasetError

SOURCE_KEYS = ("url", "path", "sha256", "files", "local_dir")
_FILE_KEYS = ("url", "path", "sha256")
_UNSET = object()


@dataclass(frozen=True)
class OfficialFile:
    """A file as its publisher distributes it: the accepted sha256 digests, None when none is known."""

    key: str
    filename: str
    url: str
    sha256: tuple[str, ...] | None


def resolve_sources(dataset: str, official: tuple[OfficialFile, ...], cfg: dict[str, Any]) -> list[Source]:
    """Apply the overrides of ``cfg`` (the dataset's section) to its official files."""
    per_file = cfg.get("files") or {}
    if not isinstance(per_file, dict):
        raise DatasetError(f"datasets.{dataset}.files must be a mapping of file key -> settings")
    keys = {f.key for f in official}
    unknown = sorted(set(per_file) - keys)
    if unknown:
        raise DatasetError(
            f"datasets.{dataset}.files: unknown file {unknown}; this dataset has {sorted(keys)}"
        )
    top_level = {k: cfg[k] for k in _FILE_KEYS if k in cfg}
    if top_level and len(official) != 1:
        raise DatasetError(
            f"datasets.{dataset}: {sorted(top_level)} at the top level is only for single-file datasets; "
            f"use files.<key>.url/path/sha256 with keys {sorted(keys)}"
        )
    single = len(official) == 1
    return [
        _resolve_one(
            f"datasets.{dataset}" if single else f"datasets.{dataset}.files.{f.key}",
            f,
            cfg.get("local_dir"),
            per_file.get(f.key, top_level),
        )
        for f in official
    ]


def _resolve_one(where: str, official: OfficialFile, local_dir: str | None, override: Any) -> Source:
    """``where`` names the configuration entry in error messages."""
    if not isinstance(override, dict):
        raise DatasetError(f"{where} must be a mapping with url/path/sha256")
    unknown = sorted(set(override) - set(_FILE_KEYS))
    if unknown:
        raise DatasetError(f"{where}: unknown keys {unknown}; allowed {list(_FILE_KEYS)}")
    if override.get("path"):
        location = str(override["path"])
    elif override.get("url"):
        location = str(override["url"])
    elif local_dir:
        location = str(Path(local_dir) / official.filename)
    else:
        location = official.url
    sha256 = override.get("sha256", _UNSET)
    pin_as = None
    if sha256 is _UNSET:
        accepted = official.sha256
        pin_as = f"{where}.sha256" if accepted is None else None
    elif sha256 is None:
        warnings.warn(
            f"{where}.sha256 is null: {official.filename} from {location} will not be verified",
            stacklevel=3,
        )
        accepted = None
    elif isinstance(sha256, str) and len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256):
        accepted = (sha256,)
    else:
        raise DatasetError(f"{where}.sha256 must be 64 lowercase hex digits or null, got {sha256!r}")
    return Source(key=official.key, filename=official.filename, location=location, sha256=accepted,
                  pin_as=pin_as)
