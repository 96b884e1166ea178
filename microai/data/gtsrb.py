"""``gtsrb``: the German Traffic Sign Recognition Benchmark, official "Final" archives.

Inputs: ``GTSRB_Final_Training_Images.zip`` (``GTSRB/Final_Training/Images/000NN/*.ppm`` with
``GT-000NN.csv`` per class), ``GTSRB_Final_Test_Images.zip`` (``GTSRB/Final_Test/Images/*.ppm``)
and ``GTSRB_Final_Test_GT.zip`` (``GT-final_test.csv`` with the test ClassIds). The CSVs are
``;``-separated: Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2[;ClassId].

Preprocessing (paper: RGB resized to 32 x 32, bilinear, anti-aliased): each image is decoded
with Pillow, converted to RGB and resized with ``Image.resize(..., BILINEAR)``, which widens its
filter support by the reduction factor when downscaling (anti-aliasing) and interpolates
bilinearly when upscaling. ROI handling (option ``roi``): ``full`` (default, as in the paper)
resizes the whole image including the ~10 % margin around the sign; ``crop`` first crops to the
annotated ROI, whose X2/Y2 corners are treated as inclusive. Output x: ``(N, 3, 32, 32)`` float32
pixel values 0..255 before normalization; the official 39,209 / 12,630 split is kept.

Every image's size must match the Width/Height of its CSV row, as in the official archive (a
mismatch means a damaged or altered archive). Option ``check_sizes: false`` skips that one check,
for pre-resized copies of the archive whose images no longer have their CSV sizes; class ids, file
lists and image decoding are still checked, and ``roi: crop`` (ROIs are in the CSV's pixel
coordinates) is then refused.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from microai.data.archive import find_member, open_zip, read_member
from microai.data.errors import DatasetError
from microai.data.prepared import RawSplits
from microai.data.sources import OfficialFile
from microai.data.spec import DatasetSpec

_BASE = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370"
_TRAIN_CSV = re.compile(r"(?:^|/)Final_Training/Images/(\d{5})/GT-\1\.csv$")
_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")

CLASS_NAMES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)", "Speed limit (60km/h)",
    "Speed limit (70km/h)", "Speed limit (80km/h)", "End of speed limit (80km/h)", "Speed limit (100km/h)",
    "Speed limit (120km/h)", "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution", "Dangerous curve to the left",
    "Dangerous curve to the right", "Double curve", "Bumpy road", "Slippery road",
    "Road narrows on the right", "Road work", "Traffic signals", "Pedestrians", "Children crossing",
    "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing", "End of all speed and passing limits",
    "Turn right ahead", "Turn left ahead", "Ahead only", "Go straight or right", "Go straight or left",
    "Keep right", "Keep left", "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
]

# The publisher lists no digests for these archives, so the configuration must pin them.
OFFICIAL = tuple(
    OfficialFile(key=key, filename=name, url=f"{_BASE}/{name}", sha256=None)
    for key, name in (
        ("train_images", "GTSRB_Final_Training_Images.zip"),
        ("test_images", "GTSRB_Final_Test_Images.zip"),
        ("test_labels", "GTSRB_Final_Test_GT.zip"),
    )
)


def _rows(archive: zipfile.ZipFile, name: str, label: str, need_class: bool) -> list[dict[str, str]]:
    text = read_member(archive, name, label).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    required = (*_COLUMNS, "ClassId") if need_class else _COLUMNS
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{label}: {name}: missing columns {missing}")
    return list(reader)


def _class_id(row: dict[str, str], where: str) -> int:
    try:
        class_id = int(row["ClassId"])
    except ValueError as exc:
        raise DatasetError(f"{where}: ClassId {row['ClassId']!r} is not an integer") from exc
    if not 0 <= class_id < len(CLASS_NAMES):
        raise DatasetError(f"{where}: ClassId {class_id} outside 0..{len(CLASS_NAMES) - 1}")
    return class_id


def _image(archive: zipfile.ZipFile, name: str, row: dict[str, str], label: str, options: dict[str, Any]
           ) -> np.ndarray:
    where = f"{label}:{name}"
    size, roi = options["image_size"], options["roi"]
    try:
        with Image.open(io.BytesIO(read_member(archive, name, label))) as img:
            img.load()
            if options["check_sizes"] and img.size != (int(row["Width"]), int(row["Height"])):
                raise DatasetError(f"{where}: image is {img.size[0]}x{img.size[1]}, its CSV row says "
                                   f"{row['Width']}x{row['Height']} (for a pre-resized copy of the "
                                   f"archive, set datasets.gtsrb.check_sizes: false)")
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DatasetError(f"{where}: unreadable image: {exc}") from exc
    if roi == "crop":
        x1, y1, x2, y2 = (int(row[c]) for c in _COLUMNS[3:])
        box = (max(x1, 0), max(y1, 0), min(x2 + 1, rgb.width), min(y2 + 1, rgb.height))
        if box[0] >= box[2] or box[1] >= box[3]:
            raise DatasetError(f"{where}: empty ROI {x1},{y1},{x2},{y2}")
        rgb = rgb.crop(box)
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32).transpose(2, 0, 1)


def _training(path: Path, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with open_zip(path, path.name) as archive:
        csvs = sorted((m[1], n) for n in archive.namelist() if (m := _TRAIN_CSV.search(n)))
        if not csvs:
            raise DatasetError(f"{path.name}: no Final_Training/Images/000NN/GT-000NN.csv members")
        for folder, csv_name in csvs:
            directory = csv_name.rsplit("/", 1)[0] + "/"
            for row in _rows(archive, csv_name, path.name, need_class=True):
                class_id = _class_id(row, f"{path.name}:{csv_name}")
                if class_id != int(folder):
                    raise DatasetError(f"{path.name}:{csv_name}: ClassId {class_id} in folder {folder}")
                images.append(_image(archive, directory + row["Filename"], row, path.name, options))
                labels.append(class_id)
    return np.stack(images), np.array(labels, dtype=np.int64)


def _test(images_path: Path, labels_path: Path, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Test images in the order of ``GT-final_test.test.csv``, labelled from ``GT-final_test.csv``."""
    with open_zip(labels_path, labels_path.name) as archive:
        gt_name = find_member(archive, "GT-final_test.csv", labels_path.name)
        truth = {r["Filename"]: _class_id(r, f"{labels_path.name}:{gt_name}")
                 for r in _rows(archive, gt_name, labels_path.name, need_class=True)}
    images, labels = [], []
    with open_zip(images_path, images_path.name) as archive:
        listing = find_member(archive, "Final_Test/Images/GT-final_test.test.csv", images_path.name)
        rows = _rows(archive, listing, images_path.name, need_class=False)
        unlabelled = sorted({r["Filename"] for r in rows} - truth.keys())
        if unlabelled:
            raise DatasetError(
                f"{labels_path.name}:{gt_name} has no ClassId for {len(unlabelled)} test images "
                f"of {images_path.name}, e.g. {unlabelled[0]}"
            )
        directory = listing.rsplit("/", 1)[0] + "/"
        for row in rows:
            labels.append(truth[row["Filename"]])
            images.append(_image(archive, directory + row["Filename"], row, images_path.name, options))
    if not images:
        raise DatasetError(f"{images_path.name}:{listing} lists no test images")
    return np.stack(images), np.array(labels, dtype=np.int64)


def _build(options: dict[str, Any], files: dict[str, Path]) -> RawSplits:
    size, roi = options["image_size"], options["roi"]
    if size < 1:
        raise DatasetError(f"datasets.gtsrb.image_size must be >= 1, got {size}")
    if roi == "crop" and not options["check_sizes"]:
        raise DatasetError("datasets.gtsrb: roi: crop needs check_sizes: true (the ROIs are in the pixel "
                           "coordinates of the sizes the CSV rows give)")
    x_train, y_train = _training(files["train_images"], options)
    x_test, y_test = _test(files["test_images"], files["test_labels"], options)
    return RawSplits(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=list(CLASS_NAMES),
        preprocessing={
            "resize": f"Pillow BILINEAR to {size}x{size} (anti-aliased when downscaling), RGB",
            "roi": roi,
            "pixels": "0..255 before normalization",
            "split": "official Final_Training / Final_Test",
            "sizes": ("each image's size checked against its CSV row" if options["check_sizes"] else
                      "image sizes NOT checked against the CSV rows (check_sizes: false, pre-resized copy)"),
        },
    )


SPEC = DatasetSpec(
    name="gtsrb",
    description="GTSRB traffic signs, RGB 32 x 32, 43 classes, official 39209/12630 split",
    files=OFFICIAL,
    options={"image_size": 32, "roi": "full", "check_sizes": True},
    build=_build,
    choices={"roi": ("full", "crop")},
)
