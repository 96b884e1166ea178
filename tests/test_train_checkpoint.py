"""Checkpoints: round trip through build_model, atomic writes, clear errors on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from microai.models import build_model
from microai.train import CheckpointError, load_checkpoint, read_checkpoint_info, save_checkpoint


@pytest.mark.parametrize("name,shape,options", [
    ("resnetv1-6", (9, 128), {}),
    ("resnet", (3, 16, 16), {"blocks": 3, "batch_norm": True, "pools": [2, 2, 1]}),
    ("mlp", (13, 39), {"depth": 1}),
])
def test_round_trip_gives_identical_outputs(tmp_path: Path, name: str, shape: tuple, options: dict) -> None:
    torch.manual_seed(0)
    model = build_model(name, shape, 5, 8, **options)
    if options.get("batch_norm"):  # non-trivial running statistics must be saved too
        model.train()
        with torch.no_grad():
            model(torch.randn(16, *shape) * 3 + 1)
    model.eval()
    path = tmp_path / "deep" / "model.pt"
    save_checkpoint(path, model, name, options, shape, 5, 8)
    loaded = load_checkpoint(path)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    info = read_checkpoint_info(path)
    assert (info.model_name, info.model_options, info.input_shape, info.num_classes, info.filters) == (
        name, options, shape, 5, 8)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"], "no temporary files left"


def test_overwrite_is_atomic_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    model = build_model("mlp", (4, 4), 2, 3)
    save_checkpoint(path, model, "mlp", {}, (4, 4), 2, 3)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="JSON-like"):
        save_checkpoint(path, model, "mlp", {"depth": object()}, (4, 4), 2, 3)
    assert path.read_bytes() == before


@pytest.mark.parametrize("damage,match", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "corrupt or unreadable"),
    (lambda p: p.write_bytes(b"not a checkpoint"), "corrupt or unreadable"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not a MicroAI checkpoint"),
    (lambda p: p.unlink(), "not found"),
])
def test_bad_files_raise_naming_the_file(tmp_path: Path, damage, match: str) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model("mlp", (4, 4), 2, 3), "mlp", {}, (4, 4), 2, 3)
    damage(path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_mismatched_metadata_cannot_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model("mlp", (4, 4), 2, 3), "mlp", {}, (4, 4), 2, filters=5)
    with pytest.raises(CheckpointError, match="cannot rebuild model 'mlp'"):
        load_checkpoint(path)


def test_same_model_saved_from_two_folders_gives_identical_bytes(tmp_path: Path) -> None:
    """The archive's inner name must not come from a temporary file name (dvc.lock would change)."""
    torch.manual_seed(0)
    model = build_model("mlp", (4, 4), 2, 3)
    first, second = tmp_path / "a" / "float32.pt", tmp_path / "b" / "float32.pt"
    save_checkpoint(first, model, "mlp", {}, (4, 4), 2, 3)
    save_checkpoint(second, model, "mlp", {}, (4, 4), 2, 3)
    assert first.read_bytes() == second.read_bytes()
