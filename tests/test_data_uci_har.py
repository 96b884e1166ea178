"""uci-har loader on the real UCI-HAR test signals, written into the official archive layout."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_data_support import (
    UCI_CSV_ZIP,
    UCI_SMALL_ZIP,
    needs_shared,
    source_cfg,
    uci_int_column,
    uci_text,
    write_zip,
    zip_bytes,
)

from microai.data import DatasetError, download_dataset, load_prepared, prepare_dataset
from microai.data.uci_har import CHANNELS, load

ROOT = "UCI HAR Dataset/"
pytestmark = needs_shared(UCI_CSV_ZIP, UCI_SMALL_ZIP)
TRAIN_SUBJECTS = (2, 4)  # the fixture's train split: these real test subjects' windows


@pytest.fixture(scope="module")
def real_test() -> dict[str, np.ndarray]:
    """Real test windows (CSV, 5 significant digits), labels and subjects of UCI-HAR."""
    with zipfile.ZipFile(UCI_CSV_ZIP) as csvs, zipfile.ZipFile(UCI_SMALL_ZIP) as small:
        data = {c: np.loadtxt(csvs.open(f"{ROOT}{c}_test.csv"), delimiter=",") for c in CHANNELS}
        data["y"] = np.loadtxt(small.open(f"{ROOT}test/y_test.txt"), dtype=np.int64)
        data["subject"] = np.loadtxt(small.open(f"{ROOT}test/subject_test.txt"), dtype=np.int64)
        data["activity_labels"] = np.frombuffer(small.read(f"{ROOT}activity_labels.txt"), np.uint8)
    return data


def official_members(real: dict[str, np.ndarray], test_rows: slice = slice(None)) -> dict[str, bytes]:
    """Train: the windows of TRAIN_SUBJECTS; test: ``test_rows`` of the real test split."""
    keep = np.isin(real["subject"], TRAIN_SUBJECTS)
    members = {f"{ROOT}activity_labels.txt": real["activity_labels"].tobytes()}
    splits = {"train": np.flatnonzero(keep)[test_rows], "test": np.arange(keep.size)[test_rows]}
    for split, rows in splits.items():
        for channel in CHANNELS:
            members[f"{ROOT}{split}/Inertial Signals/{channel}_{split}.txt"] = uci_text(real[channel][rows])
        members[f"{ROOT}{split}/y_{split}.txt"] = uci_int_column(real["y"][rows])
        members[f"{ROOT}{split}/subject_{split}.txt"] = uci_int_column(real["subject"][rows])
    return members


@pytest.fixture(scope="module")
def members(real_test: dict[str, np.ndarray]) -> dict[str, bytes]:
    return official_members(real_test)


@pytest.fixture(scope="module")
def few_members(real_test: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The same layout with 40 windows per split, for the error cases."""
    return official_members(real_test, slice(0, 40))


@pytest.fixture(scope="module")
def inner_zip(tmp_path_factory: pytest.TempPathFactory, members: dict[str, bytes]) -> Path:
    return write_zip(tmp_path_factory.mktemp("uci") / "UCI HAR Dataset.zip", members, zipfile.ZIP_STORED)


def test_loader_reads_real_test_split(inner_zip: Path, real_test: dict[str, np.ndarray]) -> None:
    splits = load(inner_zip)
    assert splits.x_test.shape == (2947, 9, 128) and splits.x_test.dtype == np.float32
    assert np.bincount(splits.y_test).tolist() == [496, 471, 420, 491, 532, 537]
    assert splits.class_names == ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING",
                                  "STANDING", "LAYING"]
    assert sorted(set(splits.subjects_test.tolist())) == [2, 4, 9, 10, 12, 13, 18, 20, 24]
    for index, channel in enumerate(CHANNELS):  # channel order body_acc, body_gyro, total_acc; x, y, z
        np.testing.assert_allclose(splits.x_test[:, index], real_test[channel], rtol=1e-6, atol=1e-12)
    keep = np.isin(real_test["subject"], TRAIN_SUBJECTS)
    assert splits.x_train.shape == (int(keep.sum()), 9, 128)
    np.testing.assert_array_equal(splits.y_train, real_test["y"][keep] - 1)


def test_official_outer_zip_with_inner_zip(tmp_path: Path, inner_zip: Path) -> None:
    outer = write_zip(tmp_path / "official.zip", {
        "UCI HAR Dataset.names": b"description",
        "__MACOSX/._UCI HAR Dataset.zip": b"resource fork",
        "UCI HAR Dataset.zip": inner_zip.read_bytes(),
    }, zipfile.ZIP_STORED)
    raw = tmp_path / "raw"
    download_dataset("uci-har", source_cfg(outer), raw)
    out = prepare_dataset("uci-har", source_cfg(outer), raw, tmp_path / "uci.npz")
    dataset = load_prepared(out)
    assert dataset.input_shape == (9, 128) and dataset.num_classes == 6
    assert np.bincount(dataset.y_test).tolist() == [496, 471, 420, 491, 532, 537]
    np.testing.assert_allclose(dataset.x_train.mean(axis=(0, 2)), 0.0, atol=1e-4)
    assert dataset.provenance["synthetic"] is False
    assert dataset.provenance["checksums"] == {raw.joinpath(
        "human+activity+recognition+using+smartphones.zip").name: source_cfg(outer)["sha256"]}


def test_row_count_mismatch_names_the_file(tmp_path: Path, few_members: dict[str, bytes]) -> None:
    name = f"{ROOT}test/Inertial Signals/body_gyro_y_test.txt"
    broken = {**few_members, name: b"".join(few_members[name].splitlines(keepends=True)[:-3])}
    with pytest.raises(DatasetError, match="y_test.txt has 40 rows but .*body_gyro_y_test.txt has 37"):
        load(write_zip(tmp_path / "broken.zip", broken))


def test_short_row_and_missing_member_are_reported(tmp_path: Path, few_members: dict[str, bytes]) -> None:
    name = f"{ROOT}train/Inertial Signals/total_acc_z_train.txt"
    lines = few_members[name].splitlines(keepends=True)
    short = {**few_members, name: b"".join([b"  1.0000000e+000\n", *lines[1:]])}
    with pytest.raises(DatasetError, match="total_acc_z_train.txt"):
        load(write_zip(tmp_path / "short.zip", short))
    missing = {k: v for k, v in few_members.items() if not k.endswith("subject_test.txt")}
    with pytest.raises(DatasetError, match="missing member 'UCI HAR Dataset/test/subject_test.txt'"):
        load(write_zip(tmp_path / "missing.zip", missing))


def test_zip_without_dataset_is_rejected(tmp_path: Path) -> None:
    outer = write_zip(tmp_path / "other.zip", {"readme.txt": zip_bytes({"a": b"b"})})
    with pytest.raises(DatasetError, match="UCI HAR Dataset.zip"):
        load(outer)
