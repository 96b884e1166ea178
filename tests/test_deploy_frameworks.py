"""Framework availability: microai everywhere, tflite-micro with a TFLM tree, the others say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from microai.deploy.frameworks import unavailable_reason, unavailable_rows


def test_microai_is_available_everywhere_and_others_say_why() -> None:
    rows = unavailable_rows(["microai", "tflite-micro", "stm32cubeai"], ["qemu-m4", "nucleo-l452re-p"],
                            params={}, environ={})
    assert set(rows) == {("tflite-micro", "qemu-m4"), ("tflite-micro", "nucleo-l452re-p"),
                         ("stm32cubeai", "qemu-m4"), ("stm32cubeai", "nucleo-l452re-p")}
    assert rows[("tflite-micro", "qemu-m4")].startswith("no TFLite Micro source tree")
    assert "STM32 parts only" in rows[("stm32cubeai", "qemu-m4")]
    assert "stm32ai" in rows[("stm32cubeai", "nucleo-l452re-p")]


def test_tflite_micro_is_available_with_a_tflm_tree() -> None:
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "tflm"
    params = {"frameworks": {"tflite-micro": {"source": str(shared)}}}
    assert unavailable_reason("tflite-micro", "qemu-m4", params, environ={}) is None


def test_cube_found_on_path_is_still_not_faked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/opt/bin/" + name)
    assert "not integrated" in unavailable_reason("stm32cubeai", "nucleo-l452re-p")


def test_unknown_names_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown framework 'onnx'"):
        unavailable_rows(["onnx"], ["qemu-m4"])
    with pytest.raises(ValueError, match="unknown board 'esp32'"):
        unavailable_reason("microai", "esp32")
