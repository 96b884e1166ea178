"""Download stage: file:// URLs and local mirrors, sha256 pinning, corrupt archives, manifests."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_data_support import source_cfg, write_zip

from microai.data import DatasetError, download_dataset, prepare_dataset
from microai.data.archive import sha256_of

ARCHIVE = "human+activity+recognition+using+smartphones.zip"  # uci-har's file name in raw_dir


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    return write_zip(mirror / "UCI HAR Dataset.zip", {"UCI HAR Dataset/README.txt": b"x" * 5000})


def leftovers(raw_dir: Path) -> list[str]:
    return sorted(p.name for p in raw_dir.iterdir()) if raw_dir.exists() else []


def test_file_url_download_writes_manifest(tmp_path: Path, archive: Path) -> None:
    raw = tmp_path / "raw"
    manifest_path = download_dataset("uci-har", source_cfg(archive), raw)
    assert manifest_path == raw / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    [entry] = manifest["files"]
    assert manifest["dataset"] == "uci-har" and manifest["synthetic"] is False
    assert entry["sha256"] == sha256_of(archive) == sha256_of(raw / ARCHIVE)
    assert entry["source"] == archive.resolve().as_uri()
    assert entry["bytes"] == archive.stat().st_size
    assert leftovers(raw) == [ARCHIVE, "manifest.json"]


def test_local_path_wins_over_url(tmp_path: Path, archive: Path) -> None:
    cfg = {"path": str(archive), "url": "https://invalid.invalid/never.zip", "sha256": sha256_of(archive)}
    manifest = json.loads(download_dataset("uci-har", cfg, tmp_path / "raw").read_text())
    assert manifest["files"][0]["source"] == str(archive)


def test_wrong_checksum_names_file_and_both_digests(tmp_path: Path, archive: Path) -> None:
    raw = tmp_path / "raw"
    wrong = "0" * 64
    with pytest.raises(DatasetError) as err:
        download_dataset("uci-har", source_cfg(archive, sha256=wrong), raw)
    message = str(err.value)
    assert ARCHIVE in message and wrong in message and sha256_of(archive) in message
    assert leftovers(raw) == []


def test_truncated_zip_is_rejected_even_with_matching_digest(tmp_path: Path, archive: Path) -> None:
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    raw = tmp_path / "raw"
    with pytest.raises(DatasetError, match="not a valid zip") as err:
        download_dataset("uci-har", source_cfg(truncated), raw)
    assert sha256_of(truncated) in str(err.value)
    assert leftovers(raw) == []


def test_corrupt_member_fails_crc_check(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(corrupt, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("UCI HAR Dataset/README.txt", b"a" * 1000)
    data = bytearray(corrupt.read_bytes())
    data[data.index(b"a" * 1000) + 500] = ord("b")  # flip one stored byte: CRC no longer matches
    corrupt.write_bytes(bytes(data))
    raw = tmp_path / "raw"
    with pytest.raises(DatasetError, match="README.txt") as err:
        download_dataset("uci-har", source_cfg(corrupt), raw)
    assert "corrupt" in str(err.value)
    assert leftovers(raw) == []


def test_null_sha256_opts_out_with_warning_and_records_digest(tmp_path: Path, archive: Path) -> None:
    with pytest.warns(UserWarning, match="will not be verified"):
        path = download_dataset("uci-har", {"path": str(archive), "sha256": None}, tmp_path / "raw")
    assert json.loads(path.read_text())["files"][0]["sha256"] == sha256_of(archive)


def test_missing_official_checksum_is_trusted_on_first_use(tmp_path: Path, archive: Path) -> None:
    seen = rf"trusting the one seen now, {sha256_of(archive)}.*datasets\.fsdd\.sha256"
    with pytest.warns(UserWarning, match=seen):
        path = download_dataset("fsdd", {"path": str(archive)}, tmp_path / "raw")
    entry = json.loads(path.read_text())["files"][0]
    assert entry["sha256"] == sha256_of(archive) and entry["verification"] == "trusted on first use"


@pytest.mark.parametrize(
    ("cfg", "pattern"),
    [
        ({"urll": "x"}, "unknown keys"),
        ({"sha256": "ABC"}, "64 lowercase hex"),
        ({"files": {"nope": {}}}, "unknown file"),
    ],
)
def test_bad_config_is_rejected(tmp_path: Path, cfg: dict, pattern: str) -> None:
    with pytest.raises(DatasetError, match=pattern):
        download_dataset("uci-har", cfg, tmp_path / "raw")


def test_top_level_url_is_refused_for_multi_file_datasets(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="single-file"):
        download_dataset("gtsrb", {"url": "file:///x.zip", "sha256": None}, tmp_path / "raw")


def test_unreachable_source_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.zip"
    with pytest.raises(DatasetError, match="nowhere.zip"):
        download_dataset("uci-har", {"path": str(missing), "sha256": "a" * 64}, tmp_path / "raw")


def test_verified_file_is_reused_without_source(tmp_path: Path, archive: Path) -> None:
    raw = tmp_path / "raw"
    cfg = source_cfg(archive)
    download_dataset("uci-har", cfg, raw)
    archive.unlink()
    download_dataset("uci-har", cfg, raw)  # the verified copy in raw_dir is kept
    assert sha256_of(raw / ARCHIVE) == cfg["sha256"]


def test_prepare_detects_raw_file_changed_after_download(tmp_path: Path, archive: Path) -> None:
    raw = tmp_path / "raw"
    download_dataset("uci-har", source_cfg(archive), raw)
    (raw / ARCHIVE).write_bytes(b"tampered")
    with pytest.raises(DatasetError, match="changed since download"):
        prepare_dataset("uci-har", {}, raw, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_prepare_needs_download_and_a_known_name(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="run the download stage"):
        prepare_dataset("uci-har", {}, tmp_path / "raw", tmp_path / "out.npz")
    with pytest.raises(DatasetError, match="unknown dataset"):
        download_dataset("mnist", {}, tmp_path / "raw")


class _Server(BaseHTTPRequestHandler):
    """Serves ``files``; under /short/ it announces 1000 bytes more than it sends, then hangs up."""

    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.files.get(self.path.removeprefix("/short"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (1000 if self.path.startswith("/short/") else 0)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_base(tmp_path: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_download_and_its_failures(tmp_path: Path, archive: Path, http_base: str) -> None:
    _Server.files = {"/uci.zip": archive.read_bytes(), "/labels.npy": b"\x93NUMPY" + b"0" * 500}
    raw = tmp_path / "raw"
    cfg = source_cfg(archive, url=f"{http_base}/uci.zip")
    manifest = json.loads(download_dataset("uci-har", cfg, raw).read_text())
    assert manifest["files"][0]["source"] == f"{http_base}/uci.zip"
    with pytest.raises(DatasetError, match="cannot open .*/missing.zip"):
        download_dataset("uci-har", {**cfg, "url": f"{http_base}/missing.zip"}, tmp_path / "r404")
    # Not a zip and not pinned: only the announced length can reveal the truncation.
    keys = ("train_data", "train_labels", "test_data", "test_labels")
    short = {key: {"url": f"{http_base}/short/labels.npy", "sha256": None} for key in keys}
    sent = len(_Server.files["/labels.npy"])
    expected = f"data_sp_train.npy.*truncated transfer, received {sent} of {sent + 1000} bytes"
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match=expected):
        download_dataset("smnist", {"files": short}, tmp_path / "short")
    assert leftovers(tmp_path / "short") == []


def test_prepare_refuses_an_incomplete_manifest(tmp_path: Path, archive: Path) -> None:
    raw = tmp_path / "raw"
    manifest_path = download_dataset("uci-har", source_cfg(archive), raw)
    manifest = json.loads(manifest_path.read_text())
    manifest["files"] = []
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"lists files \[\], uci-har needs \['archive'\]"):
        prepare_dataset("uci-har", {}, raw, tmp_path / "out.npz")
    manifest["files"] = [{"key": "archive"}]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="malformed file list"):
        prepare_dataset("uci-har", {}, raw, tmp_path / "out.npz")
    manifest_path.write_text("{")
    with pytest.raises(DatasetError, match="unreadable manifest"):
        prepare_dataset("uci-har", {}, raw, tmp_path / "out.npz")
