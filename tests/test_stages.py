"""Stage functions' handling of absent hardware: recorded as unavailable, never a made-up number."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_deploy_support import needs_arm_gcc, standin_vectors, write_standin

from microai import stages
from microai.deploy.boards import get_board
from microai.deploy.estimate import estimate_elf


@pytest.fixture
def elf(tmp_path: Path) -> Path:
    path = tmp_path / "firmware.elf"
    path.write_bytes(b"\x7fELF")
    return path


def test_flash_without_probe_is_recorded_unavailable(tmp_path, elf):
    result = stages.flash("nucleo-l452re-p", {"port": None, "probe": None}, elf, tmp_path / "flash.json")
    assert result["status"].startswith("unavailable: ") and "no debug probe" in result["status"]
    assert json.loads((tmp_path / "flash.json").read_text()) == result


def test_emulator_needs_no_flashing(tmp_path, elf):
    result = stages.flash("qemu-m4", {}, elf, tmp_path / "flash.json")
    assert not result["status"].startswith("unavailable")


def _unattached(tmp_path: Path, elf: Path) -> tuple[Path, Path]:
    build = tmp_path / "build.json"
    build.write_text(json.dumps({"elf": str(elf), "rom_bytes": 1000, "ram_bytes": 9000, "vectors": 1,
                                 "opt": "-O2", "data": 100, "bss": 400}))
    flashed = tmp_path / "flash.json"
    flashed.write_text(json.dumps({"status": "unavailable: no probe"}))
    return build, flashed


def test_unattached_board_without_emulated_build_is_an_error(tmp_path, elf):
    build, flashed = _unattached(tmp_path, elf)
    with pytest.raises(ValueError, match="no qemu-m4 build"):
        stages.measure("sparkfun-edge", {}, build, flashed, tmp_path / "g.json", tmp_path / "d.npz", 1.0,
                       tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


@needs_arm_gcc
def test_unattached_board_is_estimated_on_the_emulated_build(tmp_path, elf):
    vectors = standin_vectors(np.dtype(np.int16))
    emulated = get_board("qemu-m4").build(write_standin(tmp_path / "lib"), vectors, tmp_path / "qemu")
    est = estimate_elf(emulated.elf)
    build, flashed = _unattached(tmp_path, elf)
    out = stages.measure("sparkfun-edge", {}, build, flashed, tmp_path / "g.json", tmp_path / "d.npz", 30.0,
                         tmp_path / "out.json", emulated_elf=emulated.elf)
    assert out["est_cycles"] == int(est.cycles_per_inference) > 0
    assert out["est_ms"] == pytest.approx(out["est_cycles"] / 48e6 * 1e3)
    # the paper's energy: time x 3.3 V x 0.82 mA, in uWh
    assert out["est_energy_uwh"] == pytest.approx(out["est_ms"] / 3.6e6 * 3.3 * 0.82e-3 * 1e6)
    assert out["ram_bytes"] == 100 + 400 + est.stack_bytes_used
    assert out["rom_bytes"] == 1000
    assert "outputs_match_reference" not in out and "not run on sparkfun-edge" in out["note"]
    assert "estimated" in out["how_measured"] and "qemu-m4 build" in out["how_measured"]


def test_train_float_is_a_function_of_the_run_index(tmp_path):
    """Same run index -> identical weights, whatever the process's global random state."""
    import torch

    from microai.config import load_params

    params = load_params(Path(__file__).resolve().parent.parent / "params.yaml")
    params["datasets"]["synthetic-har"].update(n_train=64, n_test=16)
    params["train"]["synthetic-har"].update(epochs=1, milestones=[1], batch_size=16)
    raw = tmp_path / "raw"
    stages.download("synthetic-har", params, raw)
    data = stages.prepare("synthetic-har", params, raw, tmp_path / "synthetic-har.npz")
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        ckpt = tmp_path / f"{global_seed}.pt"
        stages.train_float(data, "resnetv1-6", 4, 3, params, ckpt, tmp_path / f"{global_seed}.json")
        weights.append(torch.load(ckpt, weights_only=False))
    first, second = (w["state_dict"] for w in weights)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def _attached(monkeypatch, tmp_path: Path, board_class: type, counts: int) -> dict:
    """stages.measure on a board whose run() reports ``counts`` per vector and correct outputs."""
    from test_codegen_support import Builder

    from microai.deploy.boards import RunResult
    from microai.quant import reference

    b = Builder((6,))
    b.dense("x", 3)
    graph, x = b.graph(), np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)

    class Attached(board_class):
        def run(self, target, timeout=60.0):
            how = "cycles (DWT CYCCNT at 48 MHz, measured on board)" if self.run_counts == "cycles" \
                else "host wall-clock ns (clock_gettime)"
            return RunResult(self.name, reference.run(graph, x), np.array([counts, counts]), 512, how)

    monkeypatch.setattr("microai.stages.deploy._test_vectors", lambda *_: (graph, x))
    monkeypatch.setattr("microai.deploy.boards.get_board", lambda name, **cfg: Attached(**cfg))
    build = tmp_path / "build.json"
    build.write_text(json.dumps({"elf": str(tmp_path / "fw.elf"), "rom_bytes": 1000, "ram_bytes": 9000,
                                 "vectors": 2, "opt": "-O2", "data": 100, "bss": 400}))
    flashed = tmp_path / "flash.json"
    flashed.write_text(json.dumps({"status": "flashed"}))
    return stages.measure(board_class.name, {}, build, flashed, tmp_path / "g.json", tmp_path / "d.npz", 5.0,
                          tmp_path / "out.json")


def test_attached_board_cycles_go_to_measured_columns_not_estimates(monkeypatch, tmp_path):
    from microai.deploy.boards.nucleo_l452re_p import NucleoL452REP

    out = _attached(monkeypatch, tmp_path, NucleoL452REP, 4_800_000)
    assert out["cycles"] == 4_800_000 and out["ms"] == pytest.approx(100.0)
    assert out["energy_uwh"] == pytest.approx(100.0 / 3.6e6 * 3.3 * 4.8e-3 * 1e6)
    assert not any(k.startswith("est_") for k in out), "a measured number must not read as an estimate"
    assert out["outputs_match_reference"] == 1.0 and "measured on board" in out["how_measured"]


def test_host_times_are_wall_time_not_cycles(monkeypatch, tmp_path):
    from microai.deploy.boards.host import Host

    out = _attached(monkeypatch, tmp_path, Host, 2_500_000)
    assert out["host_wall_ms"] == pytest.approx(2.5)
    assert not {"cycles", "ms", "est_cycles", "est_ms"} & set(out)
    assert "wall time of the native build" in out["how_measured"]
