"""``fsdd``: the Free Spoken Digit Dataset (github.com/Jakobovski/free-spoken-digit-dataset).

Input: a zip of the repository (GitHub's archive or a mirror) with
``<top folder>/recordings/{digit}_{speaker}_{index}.wav`` (8 kHz mono 16-bit PCM). ``split``:
``official`` (the README's: recordings with index 0-4 are the test set, 5-49 the training set) or
``speaker:<name>`` (every recording of that speaker is the test set, the other speakers' the
training set). The official split puts every speaker in both sets and is at ceiling (about 100 %
float accuracy), so it cannot show quantization losses; an unseen speaker can.
Output x: ``(N, 13, 39)`` spoken-digit features (see :mod:`microai.data.audio`); subjects are
speaker ids numbered from 1 in alphabetical order of the speaker names (listed in provenance).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from microai.data.archive import open_zip, read_member
from microai.data.audio import fit_length, frame_geometry, mfcc_energy, read_wav
from microai.data.errors import DatasetError
from microai.data.prepared import RawSplits
from microai.data.sources import OfficialFile
from microai.data.spec import DatasetSpec

CLASS_NAMES = [str(d) for d in range(10)]
TEST_INDICES = range(5)
_RECORDING = re.compile(r"(?:^|/)recordings/(\d)_([A-Za-z]+)_(\d+)\.wav$")
_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"

OFFICIAL = OfficialFile(
    key="archive",
    filename="free-spoken-digit-dataset.zip",
    url=f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{_COMMIT}.zip",
    sha256=None,  # GitHub builds archives on demand and does not promise stable bytes: cfg must pin one
)


def load(path: Path, sample_rate: int, window_ms: float, hop_ms: float, frames: int,
         split: str = "official") -> RawSplits:
    """Features and labels of every recording in the archive at ``path``, in the given split."""
    path = Path(path)
    _, _, length = frame_geometry(sample_rate, window_ms, hop_ms, frames)
    with open_zip(path, path.name) as archive:
        found = sorted(
            (int(m[1]), m[2], int(m[3]), name)
            for name in archive.namelist()
            if (m := _RECORDING.search(name)) and not name.startswith("__MACOSX/")
        )
        if not found:
            raise DatasetError(f"{path.name}: no recordings/<digit>_<speaker>_<index>.wav members")
        signals = np.stack([
            fit_length(read_wav(read_member(archive, name, path.name), f"{path.name}:{name}", sample_rate),
                       length)
            for _, _, _, name in found
        ])
    digits = np.array([d for d, _, _, _ in found], dtype=np.int64)
    speakers = sorted({s for _, s, _, _ in found})
    speaker_ids = np.array([speakers.index(s) + 1 for _, s, _, _ in found], dtype=np.int64)
    test = _test_set(found, speakers, split, path.name)
    features = mfcc_energy(signals, sample_rate, window_ms, hop_ms, frames)
    return RawSplits(
        x_train=features[~test], y_train=digits[~test], x_test=features[test], y_test=digits[test],
        class_names=list(CLASS_NAMES),
        preprocessing={
            "features": "channel 0 log frame energy, channels 1-12 MFCC 1-12 (librosa, 40 mel bands)",
            "sample_rate_hz": sample_rate, "window_ms": window_ms, "hop_ms": hop_ms, "frames": frames,
            "length": "centred zero padding / centred crop to a fixed buffer before framing",
            "split": SPLITS.get(split) or f"speaker {split.removeprefix('speaker:')} held out: all of "
                                            "their recordings test, the other speakers' train",
            "speakers": speakers,
        },
        subjects_train=speaker_ids[~test], subjects_test=speaker_ids[test],
    )


SPLITS = {"official": "official: recording index 0-4 test, 5-49 train"}


def _test_set(found: list[tuple[int, str, int, str]], speakers: list[str], split: str,
              label: str) -> np.ndarray:
    """Which recordings (digit, speaker, index, member) form the test set."""
    if split == "official":
        test = np.array([i in TEST_INDICES for _, _, i, _ in found])
    elif split.startswith("speaker:"):
        held_out = split.removeprefix("speaker:")
        if held_out not in speakers:
            raise DatasetError(f"datasets.fsdd.split: no speaker {held_out!r} in {label}; "
                               f"speakers: {speakers}")
        test = np.array([s == held_out for _, s, _, _ in found])
    else:
        raise DatasetError(f"datasets.fsdd.split must be 'official' or 'speaker:<name>', got {split!r}")
    if test.all() or not test.any():
        raise DatasetError(f"{label}: split {split!r} leaves an empty train or test set")
    return test


def _build(options: dict[str, Any], files: dict[str, Path]) -> RawSplits:
    return load(files["archive"], **options)


SPEC = DatasetSpec(
    name="fsdd",
    description="Free Spoken Digit Dataset: 12 MFCC + energy x 39 frames, 10 digits, split by index/speaker",
    files=(OFFICIAL,),
    options={"sample_rate": 8000, "window_ms": 50.0, "hop_ms": 25.0, "frames": 39, "split": "official"},
    build=_build,
)
