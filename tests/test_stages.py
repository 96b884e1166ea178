"""Stage functions' handling of absent hardware: recorded as unavailable, never a made-up number."""

import json
from pathlib import Path

import pytest

from microai import stages


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


def test_unattached_board_without_estimate_is_an_error(tmp_path, elf):
    build = tmp_path / "build.json"
    build.write_text(json.dumps({"elf": str(elf), "rom_bytes": 1, "ram_bytes": 1, "vectors": 1, "opt": "-O2",
                                 "data": 0, "bss": 0}))
    flashed = tmp_path / "flash.json"
    flashed.write_text(json.dumps({"status": "unavailable: no probe"}))
    with pytest.raises(ValueError, match="no qemu-m4 estimate"):
        stages.measure("sparkfun-edge", {}, build, flashed, tmp_path / "g.json", tmp_path / "d.npz", 1.0,
                       tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_unattached_board_borrows_the_emulated_estimate(tmp_path, elf):
    build = tmp_path / "build.json"
    build.write_text(json.dumps({"elf": str(elf), "rom_bytes": 1000, "ram_bytes": 9000, "vectors": 1,
                                 "opt": "-O2", "data": 100, "bss": 400}))
    flashed = tmp_path / "flash.json"
    flashed.write_text(json.dumps({"status": "unavailable: no probe"}))
    estimate = tmp_path / "qemu.json"
    estimate.write_text(json.dumps({"est_cycles": 48_000_000, "stack_bytes_used": 500}))
    out = stages.measure("sparkfun-edge", {}, build, flashed, tmp_path / "g.json", tmp_path / "d.npz", 1.0,
                         tmp_path / "out.json", estimate_json=estimate)
    assert out["est_ms"] == pytest.approx(1000.0)  # 48 M cycles at 48 MHz
    # the paper's energy: time x 3.3 V x 0.82 mA, in uWh
    assert out["est_energy_uwh"] == pytest.approx(1.0 / 3600 * 3.3 * 0.82e-3 * 1e6)
    assert out["ram_bytes"] == 100 + 400 + 500
    assert "outputs_match_reference" not in out and "not run on sparkfun-edge" in out["note"]
    assert "estimated" in out["how_measured"]
