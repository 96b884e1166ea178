"""smnist: the four Zenodo 3515935 NumPy files, generated here in the published shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microai.data import DatasetError, download_dataset, load_prepared, prepare_dataset
from microai.data.archive import sha256_of
from microai.data.smnist import OFFICIAL, load

N_TRAIN, N_TEST = 50, 20


def write_record(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Files named as on Zenodo: rows of 39 frames x 13 coefficients, labels 0..9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_data": rng.normal(size=(N_TRAIN, 507)).astype(np.float32),
        "train_labels": np.arange(N_TRAIN) % 10,
        "test_data": rng.normal(size=(N_TEST, 507)).astype(np.float32),
        "test_labels": (np.arange(N_TEST) * 3) % 10,
    }
    paths = {}
    for official in OFFICIAL:
        paths[official.key] = folder / official.filename
        np.save(paths[official.key], arrays[official.key])
    return paths


def files_cfg(paths: dict[str, Path]) -> dict:
    return {"files": {key: {"url": p.as_uri(), "sha256": sha256_of(p)} for key, p in paths.items()}}


def test_rows_become_channels_first_frames(tmp_path: Path) -> None:
    paths = write_record(tmp_path / "zenodo")
    splits = load(paths)
    raw = np.load(paths["train_data"])
    assert splits.x_train.shape == (N_TRAIN, 13, 39) and splits.x_test.shape == (N_TEST, 13, 39)
    # value of frame t, coefficient c sits at column t * 13 + c of a row
    assert splits.x_train[4, 7, 30] == raw[4, 30 * 13 + 7]
    np.testing.assert_array_equal(splits.x_train[:, :, 0], raw[:, :13])
    assert splits.y_test.tolist() == ((np.arange(N_TEST) * 3) % 10).tolist()


def test_download_with_per_file_urls_and_prepare(tmp_path: Path) -> None:
    paths = write_record(tmp_path / "zenodo")
    raw = tmp_path / "raw"
    manifest = json.loads(download_dataset("smnist", files_cfg(paths), raw).read_text())
    assert [e["key"] for e in manifest["files"]] == ["train_data", "train_labels", "test_data", "test_labels"]
    dataset = load_prepared(prepare_dataset("smnist", files_cfg(paths), raw, tmp_path / "smnist.npz"))
    assert dataset.input_shape == (13, 39) and dataset.num_classes == 10
    assert dataset.class_names == [str(d) for d in range(10)]
    assert set(dataset.provenance["checksums"]) == {"data_sp_train.npy", "labels_train.npy",
                                                    "data_sp_test.npy", "labels_test.npy"}


def test_local_dir_mirror(tmp_path: Path) -> None:
    paths = write_record(tmp_path / "zenodo")
    cfg = {"local_dir": str(tmp_path / "zenodo"),
           "files": {key: {"sha256": sha256_of(p)} for key, p in paths.items()}}
    manifest = json.loads(download_dataset("smnist", cfg, tmp_path / "raw").read_text())
    assert manifest["files"][0]["source"] == str(paths["train_data"])


def test_unpinned_files_are_trusted_on_first_use_and_pinned_in_provenance(tmp_path: Path) -> None:
    """Zenodo publishes no sha256: a real run no longer stops; the digests seen are recorded."""
    paths = write_record(tmp_path / "zenodo")
    cfg = {"local_dir": str(tmp_path / "zenodo")}
    with pytest.warns(UserWarning, match=r"trusting the one seen now.*files\.train_data\.sha256"):
        download_dataset("smnist", cfg, tmp_path / "raw")
    prepared = prepare_dataset("smnist", cfg, tmp_path / "raw", tmp_path / "s.npz")
    provenance = load_prepared(prepared).provenance
    assert provenance["checksums"]["data_sp_train.npy"] == sha256_of(paths["train_data"])
    assert provenance["unverified"] == {p.name: "trusted on first use" for p in paths.values()}


@pytest.mark.parametrize(
    ("key", "array", "pattern"),
    [
        ("train_data", np.zeros((N_TRAIN, 500), np.float32), "expected N x 507"),
        ("train_labels", np.arange(N_TRAIN - 1) % 10, "labels for the 50 rows"),
        ("test_labels", np.full(N_TEST, 10), "labels must be integers 0..9"),
        ("test_data", np.full((N_TEST, 507), np.nan, np.float32), "finite"),
        ("train_data", np.array([{"a": 1}] * N_TRAIN, dtype=object), "not a readable .npy"),
    ],
)
def test_malformed_files_name_themselves(tmp_path: Path, key: str, array: np.ndarray, pattern: str) -> None:
    paths = write_record(tmp_path / "zenodo")
    np.save(paths[key], array, allow_pickle=True)
    with pytest.raises(DatasetError, match=pattern):
        load(paths)
