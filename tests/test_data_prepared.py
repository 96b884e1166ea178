"""Prepared format: round trip, byte-identical output, atomic writes, training-set normalization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from microai.data import DatasetError, PreparedDataset, load_prepared
from microai.data.prepared import RawSplits, channel_statistics, save_prepared, standardize


def splits(seed: int = 0, subjects: bool = True) -> RawSplits:
    rng = np.random.default_rng(seed)
    return RawSplits(
        x_train=(rng.normal(3.0, 2.0, (20, 4, 8)) * np.array([1, 10, 0.1, 0])[:, None]).astype(np.float32),
        y_train=rng.integers(0, 3, 20),
        x_test=rng.normal(3.0, 2.0, (7, 4, 8)).astype(np.float32),
        y_test=rng.integers(0, 3, 7),
        class_names=["a", "b", "c"],
        preprocessing={"kind": "test"},
        subjects_train=rng.integers(1, 5, 20) if subjects else None,
        subjects_test=rng.integers(5, 9, 7) if subjects else None,
    )


@pytest.mark.parametrize("subjects", [True, False])
def test_round_trip_keeps_everything(tmp_path: Path, subjects: bool) -> None:
    original = PreparedDataset.from_splits(splits(subjects=subjects), {"dataset": "toy", "synthetic": True})
    loaded = load_prepared(save_prepared(original, tmp_path / "d.npz"))
    for key in ("x_train", "y_train", "x_test", "y_test", "mean", "std"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(original, key))
        assert getattr(loaded, key).dtype == getattr(original, key).dtype
    assert loaded.class_names == ["a", "b", "c"] and loaded.num_classes == 3
    assert loaded.input_shape == (4, 8)
    assert loaded.provenance == original.provenance
    assert loaded.provenance["preprocessing"]["kind"] == "test"
    if subjects:
        np.testing.assert_array_equal(loaded.subjects_test, original.subjects_test)
    else:
        assert loaded.subjects_train is None and loaded.subjects_test is None


def test_same_content_gives_byte_identical_files(tmp_path: Path) -> None:
    first = save_prepared(PreparedDataset.from_splits(splits(), {"dataset": "toy"}), tmp_path / "a.npz")
    second = save_prepared(PreparedDataset.from_splits(splits(), {"dataset": "toy"}), tmp_path / "b.npz")
    assert first.read_bytes() == second.read_bytes()


def test_normalization_uses_training_statistics_only() -> None:
    base = splits()
    shifted = splits()
    shifted.x_test = shifted.x_test * 100 + 7
    a = PreparedDataset.from_splits(base, {})
    b = PreparedDataset.from_splits(shifted, {})
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    np.testing.assert_allclose(b.x_test * b.std[None, :, None] + b.mean[None, :, None], shifted.x_test,
                               rtol=1e-5, atol=1e-3)
    assert a.std[3] == 1.0  # constant training channel: std forced to 1, values stay finite
    assert np.isfinite(a.x_test).all()


IMAGE_BATCHES = arrays(
    np.float32,
    st.tuples(st.integers(2, 6), st.integers(1, 4), st.integers(1, 5), st.integers(1, 3)),
    elements=st.floats(-1e3, 1e3, width=32),
)


@settings(max_examples=30, deadline=None)
@given(IMAGE_BATCHES)
def test_standardized_training_channels_have_zero_mean_unit_std(x: np.ndarray) -> None:
    mean, std = channel_statistics(x)
    z = standardize(x, mean, std).astype(np.float64)
    spread = x.astype(np.float64).std(axis=(0, 2, 3))
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    for channel in range(x.shape[1]):
        if spread[channel] == 0:  # constant channel: std set to 1, so it normalizes to zeros
            assert std[channel] == 1.0 and not z[:, channel].any()
        elif spread[channel] > 1e-3:
            np.testing.assert_allclose(z[:, channel].std(), 1.0, rtol=1e-3)


def test_invalid_arrays_are_refused() -> None:
    good = PreparedDataset.from_splits(splits(), {})
    with pytest.raises(DatasetError, match="y_train"):
        PreparedDataset(**{**vars(good), "y_train": good.y_train.astype(np.int32)})
    with pytest.raises(DatasetError, match="labels outside"):
        PreparedDataset(**{**vars(good), "y_test": good.y_test + 3})
    with pytest.raises(DatasetError, match="mean"):
        PreparedDataset(**{**vars(good), "mean": good.mean[:2]})


def test_unreadable_file_raises_dataset_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(DatasetError, match="bad.npz"):
        load_prepared(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((1, 1, 1), np.float32))
    with pytest.raises(DatasetError, match="lacks"):
        load_prepared(partial)


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    dataset = PreparedDataset.from_splits(splits(), {"not json": object()})
    with pytest.raises(TypeError):
        save_prepared(dataset, tmp_path / "out.npz")
    assert list(tmp_path.iterdir()) == []
