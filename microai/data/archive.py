"""Fetching official files (URL, ``file://`` URL or local path) with sha256 checks, and reading zips.

Members are read straight out of the archives and never extracted, so a hostile member name
(``../../etc``) cannot write anywhere.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import socket
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from microai.data.atomic import atomic_output
from microai.data.errors import DatasetError

_CHUNK = 1 << 20
_URL_SCHEMES = ("http", "https", "ftp", "file")
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


@dataclass(frozen=True)
class Source:
    """One file of a dataset as the pipeline will fetch it.

    ``location`` is a URL (http, https, ftp, file) or a local path. ``sha256`` holds the accepted
    digests (some publishers ship the same content in more than one wrapping); ``None`` means the
    file is not verified: the user opted out (``sha256: null``), or, when ``pin_as`` names the
    setting that would pin it, no digest is known at all and the first one seen is trusted.
    """

    key: str
    filename: str
    location: str
    sha256: tuple[str, ...] | None
    pin_as: str | None = None

    @property
    def verification(self) -> str:
        if self.sha256 is not None:
            return "sha256"
        return "trusted on first use" if self.pin_as else "not verified (sha256: null)"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _open_location(location: str, timeout_s: float) -> IO[bytes]:
    scheme = urllib.parse.urlsplit(location).scheme
    try:
        if scheme in _URL_SCHEMES:
            return urllib.request.urlopen(location, timeout=timeout_s)  # noqa: S310 - schemes are whitelisted
        return open(Path(location).expanduser(), "rb")
    except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
        raise DatasetError(f"cannot open {location}: {exc}") from exc


def location_problem(location: str, timeout_s: float) -> str | None:
    """Why ``location`` cannot be read from here (a missing file, an unreachable host), or None."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme in ("http", "https", "ftp"):
        port = parts.port or {"http": 80, "https": 443, "ftp": 21}[parts.scheme]
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
        except OSError as exc:
            return f"{parts.hostname} is unreachable from here ({exc})"
        return None
    path = Path(urllib.request.url2pathname(parts.path) if parts.scheme == "file" else location).expanduser()
    return None if path.is_file() else f"{path} does not exist"


def fetch(source: Source, raw_dir: Path, timeout_s: float = 60.0) -> dict[str, Any]:
    """Copy ``source`` to ``raw_dir/source.filename``, verifying its sha256 and (for zips) its CRCs.

    A file already present with the expected digest is kept. Nothing is left behind on failure.
    Returns the manifest entry: key, filename, source, sha256, bytes.
    """
    dest = Path(raw_dir) / source.filename
    if source.sha256 is not None and dest.is_file() and (known := sha256_of(dest)) in source.sha256:
        return _manifest_entry(source, dest, known)
    digest = hashlib.sha256()
    received = 0
    with atomic_output(dest) as tmp:
        with _open_location(source.location, timeout_s) as src, open(tmp, "wb") as out:
            declared = _declared_size(src)
            try:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise DatasetError(
                    f"{source.filename}: download from {source.location} failed: {exc}"
                ) from exc
        if declared is not None and received != declared:
            raise DatasetError(
                f"{source.filename} from {source.location}: truncated transfer, "
                f"received {received} of {declared} bytes"
            )
        actual = digest.hexdigest()
        if source.sha256 is not None and actual not in source.sha256:
            raise DatasetError(
                f"{source.filename} from {source.location}: sha256 mismatch: "
                f"expected {' or '.join(source.sha256)}, got {actual}"
            )
        if source.filename.endswith(".zip"):
            check_zip(tmp, label=f"{source.filename} (sha256 {actual})")
    if source.pin_as:
        warnings.warn(f"{source.filename} from {source.location} has no official sha256: trusting the one "
                      f"seen now, {actual} (recorded in the manifest and the results' provenance; set "
                      f"{source.pin_as} to it to verify later downloads)", stacklevel=2)
    return _manifest_entry(source, dest, actual)


def _declared_size(response: IO[bytes]) -> int | None:
    """The Content-Length a URL response announced, None for local files or when absent."""
    headers = getattr(response, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    return int(length) if length is not None and length.isdigit() else None


def _manifest_entry(source: Source, path: Path, sha256: str) -> dict[str, Any]:
    return {
        "key": source.key,
        "filename": source.filename,
        "source": source.location,
        "sha256": sha256,
        "verification": source.verification,
        "bytes": path.stat().st_size,
    }


def open_zip(data: Path | bytes, label: str) -> zipfile.ZipFile:
    """Open a zip from a path or from bytes; ``label`` names it in errors."""
    try:
        return zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except _ZIP_READ_ERRORS as exc:
        raise DatasetError(f"{label}: not a valid zip archive (truncated or corrupt?): {exc}") from exc


def check_zip(path: Path, label: str) -> None:
    """Read every member of the zip at ``path`` and check its CRC."""
    with open_zip(path, label) as archive:
        try:
            bad = archive.testzip()
        except _ZIP_READ_ERRORS as exc:
            raise DatasetError(f"{label}: corrupt zip archive: {exc}") from exc
    if bad is not None:
        raise DatasetError(f"{label}: corrupt zip archive: member {bad!r} fails its CRC check")


def read_member(archive: zipfile.ZipFile, name: str, label: str) -> bytes:
    """The bytes of member ``name``; a missing or damaged member raises DatasetError naming both."""
    try:
        return archive.read(name)
    except KeyError as exc:
        raise DatasetError(f"{label}: missing member {name!r}") from exc
    except _ZIP_READ_ERRORS as exc:
        raise DatasetError(f"{label}: cannot read member {name!r}: {exc}") from exc


def find_member(archive: zipfile.ZipFile, suffix: str, label: str) -> str:
    """The single member whose name ends with ``suffix`` (archives differ in their top folder)."""
    matches = [n for n in archive.namelist() if n.endswith(suffix) and not n.startswith("__MACOSX/")]
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(matches[:5])
        raise DatasetError(f"{label}: expected exactly one member ending in {suffix!r}, found {found}")
    return matches[0]

