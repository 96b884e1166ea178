"""gtsrb: tiny archives in the exact layout of the three official GTSRB "Final" zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_data_support import write_zip

from microai.data import DatasetError, download_dataset, load_prepared, prepare_dataset
from microai.data.archive import sha256_of
from microai.data.gtsrb import SPEC

HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2"
BORDER, INSIDE = (200, 0, 0), (0, 0, 180)
# (class, width, height): downscaled, upscaled and non-square images
TRAIN = [(0, 40, 45), (0, 29, 30), (1, 64, 52), (1, 35, 35), (14, 50, 50), (14, 26, 27)]
TEST = [(14, 41, 44), (0, 33, 30), (1, 70, 70)]


def sign(width: int, height: int) -> tuple[bytes, tuple[int, int, int, int]]:
    """A PPM with a red margin and a blue sign; the ROI (inclusive corners) covers the blue part."""
    roi = (5, 5, width - 6, height - 6)
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:] = BORDER
    pixels[roi[1]:roi[3] + 1, roi[0]:roi[2] + 1] = INSIDE
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PPM")
    return buffer.getvalue(), roi


def row(name: str, width: int, height: int, roi: tuple[int, ...], class_id: int | None) -> str:
    fields = [name, width, height, *roi] + ([] if class_id is None else [class_id])
    return ";".join(map(str, fields))


def official_archives(folder: Path, test_gt_rows: int = len(TEST)) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    train: dict[str, bytes] = {}
    for class_id in sorted({c for c, _, _ in TRAIN}):
        directory = f"GTSRB/Final_Training/Images/{class_id:05d}/"
        lines = [HEADER + ";ClassId"]
        for track, (_, w, h) in enumerate(s for s in TRAIN if s[0] == class_id):
            name = f"{track:05d}_00000.ppm"
            train[directory + name], roi = sign(w, h)
            lines.append(row(name, w, h, roi, class_id))
        train[directory + f"GT-{class_id:05d}.csv"] = ("\n".join(lines) + "\n").encode()
    test: dict[str, bytes] = {}
    listing, truth = [HEADER], [HEADER + ";ClassId"]
    for index, (class_id, w, h) in enumerate(TEST):
        name = f"{index:05d}.ppm"
        test[f"GTSRB/Final_Test/Images/{name}"], roi = sign(w, h)
        listing.append(row(name, w, h, roi, None))
        truth.append(row(name, w, h, roi, class_id))
    test["GTSRB/Final_Test/Images/GT-final_test.test.csv"] = ("\n".join(listing) + "\n").encode()
    return {
        "train_images": write_zip(folder / "GTSRB_Final_Training_Images.zip", train),
        "test_images": write_zip(folder / "GTSRB_Final_Test_Images.zip", test),
        "test_labels": write_zip(
            folder / "GTSRB_Final_Test_GT.zip",
            {"GT-final_test.csv": ("\n".join(truth[: test_gt_rows + 1]) + "\n").encode()},
        ),
    }


def build(paths: dict[str, Path], roi: str = "full"):
    return SPEC.build(SPEC.options_from({"roi": roi}), paths)


def test_official_layout_is_read_in_order(tmp_path: Path) -> None:
    splits = build(official_archives(tmp_path))
    assert splits.x_train.shape == (6, 3, 32, 32) and splits.x_test.shape == (3, 3, 32, 32)
    assert splits.y_train.tolist() == [c for c, _, _ in TRAIN]
    assert splits.y_test.tolist() == [c for c, _, _ in TEST]
    assert len(splits.class_names) == 43 and splits.class_names[14] == "Stop"


def test_full_image_resize_is_pillow_bilinear(tmp_path: Path) -> None:
    splits = build(official_archives(tmp_path))
    for index, (_, w, h) in enumerate(TRAIN):
        expected = Image.open(io.BytesIO(sign(w, h)[0])).resize((32, 32), Image.Resampling.BILINEAR)
        expected_chw = np.asarray(expected, np.float32).transpose(2, 0, 1)
        np.testing.assert_array_equal(splits.x_train[index], expected_chw)
    corner = splits.x_train[:, :, 0, 0]
    assert np.all(corner[:, 0] > 100)  # the red margin reaches the corners


def test_roi_crop_keeps_only_the_sign(tmp_path: Path) -> None:
    splits = build(official_archives(tmp_path), roi="crop")
    np.testing.assert_allclose(splits.x_test, np.broadcast_to(np.array(INSIDE, np.float32)[:, None, None],
                                                              splits.x_test.shape), atol=1.0)


def test_download_and_prepare_end_to_end(tmp_path: Path) -> None:
    paths = official_archives(tmp_path / "mirror")
    cfg = {"files": {k: {"url": p.as_uri(), "sha256": sha256_of(p)} for k, p in paths.items()}}
    download_dataset("gtsrb", cfg, tmp_path / "raw")
    dataset = load_prepared(prepare_dataset("gtsrb", cfg, tmp_path / "raw", tmp_path / "gtsrb.npz"))
    assert dataset.input_shape == (3, 32, 32) and dataset.num_classes == 43
    assert dataset.mean.shape == (3,) and dataset.provenance["preprocessing"]["roi"] == "full"
    np.testing.assert_allclose(dataset.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)


def test_inconsistent_archives_are_reported(tmp_path: Path) -> None:
    paths = official_archives(tmp_path / "ok")
    with pytest.raises(DatasetError, match="roi must be one of"):
        build(paths, roi="centre")
    fewer_labels = official_archives(tmp_path / "fewer", test_gt_rows=2)
    with pytest.raises(DatasetError, match="no ClassId for 1 test images .* e.g. 00002.ppm"):
        build(fewer_labels)
    listing = "GTSRB/Final_Test/Images/GT-final_test.test.csv"
    unreadable = official_archives(tmp_path / "unreadable")
    with_junk = {listing: f"{HEADER}\n{row('00000.ppm', 41, 44, (5, 5, 35, 38), None)}\n".encode(),
                 "GTSRB/Final_Test/Images/00000.ppm": b"junk"}
    write_zip(unreadable["test_images"], with_junk)
    with pytest.raises(DatasetError, match="00000.ppm: unreadable image"):
        build(unreadable)
    missing = official_archives(tmp_path / "missing")
    write_zip(missing["test_images"], {listing: with_junk[listing]})
    with pytest.raises(DatasetError, match="missing member 'GTSRB/Final_Test/Images/00000.ppm'"):
        build(missing)
    resized = official_archives(tmp_path / "resized")
    with_wrong_size = {listing: f"{HEADER}\n{row('00000.ppm', 40, 44, (5, 5, 35, 38), None)}\n".encode(),
                       "GTSRB/Final_Test/Images/00000.ppm": sign(41, 44)[0]}
    write_zip(resized["test_images"], with_wrong_size)
    with pytest.raises(DatasetError, match="image is 41x44, its CSV row says 40x44"):
        build(resized)


def pre_resized(archives: dict[str, Path], size: int = 32) -> dict[str, Path]:
    """The archives with every image resized to size x size and the CSV rows left as they were."""
    for key in ("train_images", "test_images"):
        with zipfile.ZipFile(archives[key]) as archive:
            members = {n: archive.read(n) for n in archive.namelist()}
        for name, data in members.items():
            if name.endswith(".ppm"):
                buffer = io.BytesIO()
                Image.open(io.BytesIO(data)).resize((size, size)).save(buffer, format="PPM")
                members[name] = buffer.getvalue()
        write_zip(archives[key], members)
    return archives


def test_size_mismatch_names_the_users_archive_and_the_option(tmp_path: Path) -> None:
    paths = pre_resized(official_archives(tmp_path / "my copy"))
    cfg = {"files": {k: {"path": str(p), "sha256": sha256_of(p)} for k, p in paths.items()}}
    download_dataset("gtsrb", cfg, tmp_path / "raw")
    with pytest.raises(DatasetError) as err:
        prepare_dataset("gtsrb", cfg, tmp_path / "raw", tmp_path / "gtsrb.npz")
    message = str(err.value)
    assert "image is 32x32, its CSV row says 40x45" in message
    assert str(paths["train_images"]) in message  # the user's archive, not only the raw copy
    assert "datasets.gtsrb.check_sizes: false" in message


def test_check_sizes_false_reads_a_pre_resized_copy_and_says_so(tmp_path: Path) -> None:
    paths = pre_resized(official_archives(tmp_path / "copy"))
    cfg = {"files": {k: {"path": str(p), "sha256": sha256_of(p)} for k, p in paths.items()},
           "check_sizes": False}
    download_dataset("gtsrb", cfg, tmp_path / "raw")
    dataset = load_prepared(prepare_dataset("gtsrb", cfg, tmp_path / "raw", tmp_path / "gtsrb.npz"))
    assert dataset.x_train.shape == (6, 3, 32, 32)
    assert "NOT checked" in dataset.provenance["preprocessing"]["sizes"]
    with pytest.raises(DatasetError, match="roi: crop needs check_sizes: true"):
        SPEC.build(SPEC.options_from({"roi": "crop", "check_sizes": False}), paths)
