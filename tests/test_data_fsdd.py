"""fsdd on the real Free Spoken Digit Dataset archive, and the spoken-digit feature extractor."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data_support import FSDD_SHA256, FSDD_ZIP, needs_shared, write_zip

from microai.data import DatasetError, PreparedDataset, download_dataset, load_prepared, prepare_dataset
from microai.data.audio import fit_length, frame_geometry, mfcc_energy, read_wav
from microai.data.fsdd import load

pytestmark = needs_shared(FSDD_ZIP)


def prepared_from(path: Path, sha256: str, work: Path) -> PreparedDataset:
    cfg = {"path": str(path), "sha256": sha256}
    download_dataset("fsdd", cfg, work / "raw")
    return load_prepared(prepare_dataset("fsdd", cfg, work / "raw", work / "fsdd.npz"))


def wav_bytes(signal: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_real_archive_official_split_and_separable_features(tmp_path: Path) -> None:
    prepared = prepared_from(FSDD_ZIP, FSDD_SHA256, tmp_path)
    assert prepared.x_train.shape == (2700, 13, 39) and prepared.x_test.shape == (300, 13, 39)
    assert prepared.input_shape == (13, 39) and prepared.num_classes == 10
    assert np.bincount(prepared.y_train).tolist() == [270] * 10
    assert np.bincount(prepared.y_test).tolist() == [30] * 10
    assert prepared.provenance["preprocessing"]["speakers"] == [
        "george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert np.bincount(prepared.subjects_test).tolist() == [0] + [50] * 6
    assert np.isfinite(prepared.x_train).all() and np.isfinite(prepared.x_test).all()
    np.testing.assert_allclose(prepared.x_train.mean(axis=(0, 2)), 0.0, atol=1e-4)
    # Nearest class mean on the flattened features beats chance (10 %) by far on unseen recordings.
    train = prepared.x_train.reshape(len(prepared.x_train), -1)
    test = prepared.x_test.reshape(len(prepared.x_test), -1)
    means = np.stack([train[prepared.y_train == d].mean(axis=0) for d in range(10)])
    predicted = np.argmin(((test[:, None] - means[None]) ** 2).sum(axis=2), axis=1)
    assert np.mean(predicted == prepared.y_test) > 0.4


def test_energy_row_is_log_frame_energy() -> None:
    rate = 8000
    window, hop, length = frame_geometry(rate, 50.0, 25.0, 39)
    assert (window, hop, length) == (400, 200, 8000)
    t = np.arange(length) / rate
    signal = (0.5 * np.sin(2 * np.pi * 440 * t) * np.linspace(0.1, 1, length)).astype(np.float32)
    features = mfcc_energy(signal[None], rate)
    assert features.shape == (1, 13, 39) and features.dtype == np.float32
    frame = signal[5 * hop:5 * hop + window].astype(np.float64)
    np.testing.assert_allclose(features[0, 0, 5], np.log(np.sum(frame**2)), rtol=1e-5)
    assert np.all(np.diff(features[0, 0]) > 0)  # the amplitude ramps up, so does the energy


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 500), st.integers(1, 300))
def test_fit_length_centres_the_signal(size: int, length: int) -> None:
    signal = np.arange(1, size + 1, dtype=np.float32)
    out = fit_length(signal, length)
    assert out.size == length
    kept = out[out != 0]
    assert np.all(np.diff(kept) == 1)  # a contiguous run of the original samples
    if size <= length:
        assert kept.size == size and abs(np.argmax(out != 0) - (length - size - np.argmax(out != 0))) <= 1
    else:
        assert abs((kept[0] - 1) - (size - kept[-1])) <= 1


def test_other_rates_and_stereo_are_converted() -> None:
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 300 * t)
    resampled = read_wav(wav_bytes(tone, 16000), "tone.wav", 8000)
    assert resampled.shape == (8000,) and resampled.dtype == np.float32
    stereo = read_wav(wav_bytes(np.stack([tone, -tone], axis=1), 16000), "stereo.wav", 16000)
    np.testing.assert_allclose(stereo, 0.0, atol=1e-4)  # channels are averaged
    with pytest.raises(DatasetError, match="broken.wav"):
        read_wav(b"RIFF....WAVEfmt garbage", "broken.wav", 8000)


def test_tiny_archive_split_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    members = {f"fsdd-main/recordings/{d}_{s}_{i}.wav": wav_bytes(0.1 * rng.normal(size=3000), 8000)
               for d in (3, 7) for s in ("ann", "bob") for i in (0, 6, 7)}
    splits = load(write_zip(tmp_path / "tiny.zip", members), 8000, 50.0, 25.0, 39)
    assert splits.x_train.shape == (8, 13, 39) and splits.x_test.shape == (4, 13, 39)
    assert splits.y_test.tolist() == [3, 3, 7, 7] and splits.subjects_test.tolist() == [1, 2, 1, 2]
    with pytest.raises(DatasetError, match="no recordings"):
        load(write_zip(tmp_path / "empty.zip", {"readme.md": b"x"}), 8000, 50.0, 25.0, 39)
    corrupt = {**members, "fsdd-main/recordings/3_ann_0.wav": b"not audio"}
    with pytest.raises(DatasetError, match="3_ann_0.wav"):
        load(write_zip(tmp_path / "bad.zip", corrupt, zipfile.ZIP_STORED), 8000, 50.0, 25.0, 39)


def test_real_archive_split_holding_out_one_speaker(tmp_path: Path) -> None:
    cfg = {"path": str(FSDD_ZIP), "sha256": FSDD_SHA256, "split": "speaker:theo"}
    download_dataset("fsdd", cfg, tmp_path / "raw")
    prepared = load_prepared(prepare_dataset("fsdd", cfg, tmp_path / "raw", tmp_path / "fsdd.npz"))
    speakers = prepared.provenance["preprocessing"]["speakers"]
    theo = speakers.index("theo") + 1
    assert prepared.x_test.shape == (500, 13, 39) and prepared.x_train.shape == (2500, 13, 39)
    assert set(prepared.subjects_test.tolist()) == {theo}
    assert theo not in set(prepared.subjects_train.tolist())
    assert np.bincount(prepared.y_test).tolist() == [50] * 10
    assert "theo held out" in prepared.provenance["preprocessing"]["split"]


@pytest.mark.parametrize(("split", "message"), [
    ("speaker:nobody", r"no speaker 'nobody'.*speakers: \['george'"),
    ("by-index", r"must be 'official' or 'speaker:<name>'"),
])
def test_bad_split_names_the_choices(tmp_path: Path, split: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load(FSDD_ZIP, 8000, 50.0, 25.0, 39, split=split)
