"""synthetic-har: UCI-HAR's shape, determinism, subject-disjoint split, plausible physics, hard classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microai.data import DatasetError, download_dataset, load_prepared, prepare_dataset
from microai.data.prepared import RawSplits
from microai.data.synthetic_har import CLASS_NAMES, SAMPLE_RATE_HZ, generate

SMALL = {"seed": 3, "n_train": 600, "n_test": 300}
WALKING, SITTING, STANDING, LAYING = 0, 3, 4, 5


@pytest.fixture(scope="module")
def data() -> RawSplits:
    return generate(seed=0, n_train=3000, n_test=1200, train_subjects=21, test_subjects=9)


def prepare(tmp_path: Path, cfg: dict, name: str) -> Path:
    raw = tmp_path / f"raw-{name}"
    download_dataset("synthetic-har", cfg, raw)
    return prepare_dataset("synthetic-har", cfg, raw, tmp_path / f"{name}.npz")


def test_shape_classes_and_provenance(tmp_path: Path) -> None:
    dataset = load_prepared(prepare(tmp_path, SMALL, "a"))
    assert dataset.x_train.shape == (600, 9, 128) and dataset.x_test.shape == (300, 9, 128)
    assert dataset.input_shape == (9, 128) and dataset.num_classes == 6
    assert dataset.class_names == CLASS_NAMES
    assert dataset.provenance["synthetic"] is True
    assert dataset.provenance["generator"] == {**SMALL, "train_subjects": 21, "test_subjects": 9}
    assert set(np.unique(dataset.y_train)) == set(range(6))
    np.testing.assert_allclose(dataset.x_train.mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(dataset.x_train.std(axis=(0, 2)), 1.0, rtol=1e-3)


def test_defaults_match_uci_har_sizes() -> None:
    from microai.data import DATASETS

    options = DATASETS["synthetic-har"].options_from({})
    assert (options["n_train"], options["n_test"]) == (7352, 2947)
    assert (options["train_subjects"], options["test_subjects"]) == (21, 9)


def test_same_config_gives_identical_file_and_seed_changes_it(tmp_path: Path) -> None:
    first = prepare(tmp_path, SMALL, "a").read_bytes()
    assert prepare(tmp_path, SMALL, "b").read_bytes() == first
    assert prepare(tmp_path, {**SMALL, "seed": 4}, "c").read_bytes() != first


def test_test_size_does_not_change_training_set() -> None:
    a = generate(seed=1, n_train=200, n_test=50, train_subjects=5, test_subjects=3)
    b = generate(seed=1, n_train=200, n_test=80, train_subjects=5, test_subjects=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_test, b.x_test[:50])


def test_subjects_are_disjoint(data: RawSplits) -> None:
    assert set(np.unique(data.subjects_train)) == set(range(1, 22))
    assert set(np.unique(data.subjects_test)) == set(range(22, 31))


def test_gravity_and_body_acceleration_are_physical(data: RawSplits) -> None:
    x, y = data.x_train, data.y_train
    gravity = x[:, 6:9].mean(axis=2)  # total_acc averaged over the window ~ gravity (g)
    np.testing.assert_allclose(np.linalg.norm(gravity, axis=1).mean(), 1.0, atol=0.03)
    np.testing.assert_allclose(x[:, 0:3].mean(), 0.0, atol=0.01)  # body_acc has gravity removed
    assert gravity[y == STANDING, 0].mean() > 0.9  # upright: gravity on the device's x axis
    assert abs(gravity[y == LAYING, 0].mean()) < 0.3  # lying: gravity off the x axis
    dynamic = x[y <= 2, 0:3].std(axis=2).mean()
    static = x[y >= 3, 0:3].std(axis=2).mean()
    assert dynamic > 5 * static


def test_walking_has_a_gait_frequency(data: RawSplits) -> None:
    walking = data.x_train[data.y_train == WALKING, 0]  # body_acc_x: vertical bounce
    spectrum = np.abs(np.fft.rfft(walking, axis=1))[:, 1:]
    dominant = np.fft.rfftfreq(128, 1 / SAMPLE_RATE_HZ)[1:][spectrum.argmax(axis=1)]
    assert 0.9 < np.mean((dominant > 1.2) & (dominant < 2.7))


def test_classes_overlap_so_simple_features_do_not_separate_them(data: RawSplits) -> None:
    """Nearest class centroid on per-channel mean/std: well above chance, far from perfect."""
    def features(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x.mean(axis=2), x.std(axis=2)], axis=1)

    train, test = features(data.x_train), features(data.x_test)
    mu, sd = train.mean(axis=0), train.std(axis=0)
    train, test = (train - mu) / sd, (test - mu) / sd
    centroids = np.stack([train[data.y_train == c].mean(axis=0) for c in range(6)])
    predicted = np.argmin(((test[:, None] - centroids[None]) ** 2).sum(axis=2), axis=1)
    accuracy = np.mean(predicted == data.y_test)
    assert 0.55 < accuracy < 0.9
    sit_stand = np.isin(data.y_test, (SITTING, STANDING))
    assert np.mean(predicted[sit_stand] == data.y_test[sit_stand]) < 0.9


def test_bad_options_and_stale_raw_dir_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="n_train must be >= 1"):
        generate(seed=0, n_train=0, n_test=5, train_subjects=2, test_subjects=2)
    with pytest.raises(DatasetError, match="must be int"):
        download_dataset("synthetic-har", {"n_train": "100"}, tmp_path / "raw")
    with pytest.raises(DatasetError, match="unknown keys"):
        download_dataset("synthetic-har", {"url": "x"}, tmp_path / "raw")
    download_dataset("synthetic-har", SMALL, tmp_path / "raw")
    with pytest.raises(DatasetError, match="re-run the download stage"):
        prepare_dataset("synthetic-har", {**SMALL, "seed": 9}, tmp_path / "raw", tmp_path / "x.npz")


@pytest.mark.slow
def test_small_cnn_learns_it_but_stays_clearly_below_perfect() -> None:
    """A 16-filter residual Conv1D net (the paper's ResNetv1-6 shape) on the default sizes."""
    torch = pytest.importorskip("torch")
    nn, functional = torch.nn, torch.nn.functional
    torch.manual_seed(0)
    data = generate(seed=0, n_train=7352, n_test=2947, train_subjects=21, test_subjects=9)
    mean = data.x_train.mean(axis=(0, 2), keepdims=True)
    std = data.x_train.std(axis=(0, 2), keepdims=True)
    x_train, x_test = (torch.tensor((x - mean) / std) for x in (data.x_train, data.x_test))
    y_train = torch.tensor(data.y_train)

    class Net(nn.Module):
        def __init__(self, filters: int = 16) -> None:
            super().__init__()
            self.stem = nn.Conv1d(9, filters, 3, padding=1)
            self.convs = nn.ModuleList(nn.Conv1d(filters, filters, 3, padding=1) for _ in range(4))
            self.shortcut = nn.Conv1d(filters, filters, 1)
            self.head = nn.Linear(filters, 6)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = functional.relu(self.stem(x))
            y = self.convs[1](functional.relu(functional.max_pool1d(self.convs[0](x), 2)))
            x = functional.relu(y + functional.max_pool1d(self.shortcut(x), 2))
            x = functional.relu(x + self.convs[3](functional.relu(self.convs[2](x))))
            return self.head(x.amax(dim=2))

    net = Net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [10, 15], 0.13)
    for _ in range(18):
        for batch in torch.randperm(len(x_train)).split(64):
            loss = functional.cross_entropy(net(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    with torch.no_grad():
        accuracy = (net(x_test).argmax(dim=1).numpy() == data.y_test).mean()
    assert 0.8 < accuracy < 0.96
