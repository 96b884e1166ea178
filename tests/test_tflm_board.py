"""TFLite Micro on the emulated board: .tflite models built into the qemu-m4 firmware with the shared
TFLM + CMSIS-NN tree, outputs bit for bit equal to the TFLM host runtime's, and the failures a user
can meet (an incomplete tree, an operator the tree lacks, an arena too small, an image too large)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_deploy_support import needs_qemu

from microai import stages
from microai.data.prepared import PreparedDataset, RawSplits, save_prepared
from microai.deploy.boards.qemu_m4 import QemuM4
from microai.deploy.errors import BuildError, DoesNotFit, FirmwareError
from microai.deploy.tflm.firmware import build_tflm_firmware
from microai.deploy.tflm.library import build_library
from microai.deploy.tflm.measure import measure_tflite, operator_macs, outputs_match
from microai.deploy.tflm.sources import RESOLVER_HEADER, write_model_sources
from microai.deploy.tflm.tree import TflmTree, TflmTreeError, load_tree
from microai.graph.torch_import import from_torch
from microai.models import build_model
from microai.tflite.convert import to_tflite
from microai.tflite.runtime import operators, quantize_input

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT.parent / "shared" / "tflm"
SHAPE, CLASSES = (3, 32), 4
pytestmark = [needs_qemu, pytest.mark.skipif(not TREE.is_dir(), reason=f"no TFLite Micro tree at {TREE}")]


@pytest.fixture(scope="module")
def tflm():
    """The shared tree and its library (compiled once into the cache, minutes the first time)."""
    tree = load_tree(TREE)
    return tree, build_library(tree)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[dict[str, Path], np.ndarray]:
    """A small ResNetv1-6 (F=4) as float32.tflite and int8.tflite (TFLite PTQ), and float test inputs."""
    torch.manual_seed(0)
    graph = from_torch(build_model("resnetv1-6", SHAPE, CLASSES, 4).eval(), SHAPE)
    x = np.random.default_rng(0).normal(0, 1, (40, *SHAPE)).astype(np.float32)
    folder = tmp_path_factory.mktemp("tflite")
    paths = {}
    for precision in ("float32", "int8"):
        paths[precision] = folder / f"{precision}.tflite"
        paths[precision].write_bytes(to_tflite(graph, precision, x[:32]))
    return paths, x[32:]


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_board_outputs_equal_the_host_runtime_bit_for_bit(tflm, models, precision, tmp_path) -> None:
    paths, x = models
    m = measure_tflite(paths[precision], x, *tflm, tmp_path)  # also checks Unicorn's count against QEMU's
    assert m.run.outputs.dtype == np.dtype(precision) and len(m.run.outputs) == len(x)
    assert m.matches.all()
    assert m.run.arena_bytes is not None and 0 < m.run.arena_bytes[0] <= m.run.arena_bytes[1]
    profile = m.estimate.layer_cycles[0]  # per operator in execution order, then "other"
    operators = [k for k in profile if k != "other"]
    assert operators == sorted(operators) and operators[0].startswith("00 ")
    assert {k.split(" ", 1)[1] for k in operators} >= {"CONV_2D", "MAX_POOL_2D", "ADD", "FULLY_CONNECTED"}
    assert sum(profile.values()) == m.estimate.cycles[0]
    assert 0 < m.ram_bytes < m.build.ram_bytes + m.run.arena_bytes[0]


def test_operator_macs_add_up_to_the_graph(models) -> None:
    torch.manual_seed(0)
    graph = from_torch(build_model("resnetv1-6", SHAPE, CLASSES, 4).eval(), SHAPE)
    for path in models[0].values():
        macs = operator_macs(path)
        assert sum(macs) == graph.macs() and len(macs) == len(operators(path))


def test_a_changed_output_is_caught() -> None:
    expected = np.array([[1.0, -2.0], [3.0, 0.0]], np.float32)
    actual = expected.copy()
    actual[1, 1] = -0.0  # equal as a number, not bit for bit
    assert outputs_match(expected, actual).tolist() == [True, False]


def test_arena_too_small_reports_tflm_own_error(tflm, models, tmp_path) -> None:
    paths, x = models
    tree, library = tflm
    board = QemuM4()
    inputs = quantize_input(paths["int8"], x[:1])
    build, _ = build_tflm_firmware(board, paths["int8"], tree, library, 0, inputs.reshape(1, -1), tmp_path)
    with pytest.raises(FirmwareError, match=r"it logged: Failed to allocate .* missing: \d+") as err:
        board.run(build)
    assert "AllocateTensors() failed with a tensor arena of" in str(err.value)


def test_image_too_large_for_the_board_does_not_fit(tflm, models, tmp_path) -> None:
    paths, x = models
    small = QemuM4(flash_bytes=64 * 1024)  # TFLM alone needs more than 100 KiB
    with pytest.raises(DoesNotFit, match=r"does not fit qemu-m4: needs \d+\.\d KiB flash"):
        build_tflm_firmware(small, paths["int8"], *tflm, 20000,
                            quantize_input(paths["int8"], x[:1]).reshape(1, -1), tmp_path)


def test_a_model_too_large_for_a_board_gives_a_row_saying_so(tflm, tmp_path) -> None:
    """The pipeline's stages on a float32 model whose activations (2 x 16 x 4000 floats) exceed the
    Nucleo's 128 KiB of RAM: build.json says why, flash and measure carry the reason on."""
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Conv1d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(),
                        nn.Linear(16, 2))
    tflite = tmp_path / "float32.tflite"
    tflite.write_bytes(to_tflite(from_torch(net.eval(), (8, 4000)), "float32"))
    x = np.random.default_rng(0).normal(0, 1, (6, 8, 4000)).astype(np.float32)
    splits = RawSplits(x[:4], np.array([0, 1, 0, 1]), x[4:], np.array([0, 1]), ["a", "b"], {})
    prepared = save_prepared(PreparedDataset.from_splits(splits, {}), tmp_path / "prepared.npz")
    library = tmp_path / "libtflm.json"
    library.write_text(json.dumps({"archive": tflm[1].archive, "key": tflm[1].key, "opt": "-O2"}))
    params = {"frameworks": {"tflite-micro": {"source": str(TREE)}}, "boards": {}}
    out = tmp_path / "nucleo-l452re-p"
    built = stages.compile_tflm_firmware("nucleo-l452re-p", tflite, library, prepared, 1, "-O2", params, out)
    assert re.fullmatch(r"does not fit nucleo-l452re-p: needs .* KiB RAM, has .* 128\.0 KiB RAM",
                        built["unavailable"])
    assert built["needs"]["RAM"] > 128 * 1024 and not (out / "firmware.elf").exists()
    flashed = stages.flash("nucleo-l452re-p", {}, out / "firmware.elf", out / "flash.json")
    assert flashed["status"] == f"unavailable: no image: {built['unavailable']}"
    measured = stages.measure_tflm("nucleo-l452re-p", {}, out / "build.json", out / "flash.json", tflite,
                                   prepared, 60, tmp_path / "float32.nucleo-l452re-p.json")
    assert measured["note"] == f"unavailable: {built['unavailable']}" and "rom_bytes" not in measured


def test_operator_missing_from_the_tree_is_named(models, tmp_path) -> None:
    header = tmp_path / RESOLVER_HEADER
    header.parent.mkdir(parents=True)
    header.write_text("TfLiteStatus AddAdd(\n    const TFLMRegistration& registration = Register_ADD()) {\n"
                      "  return AddBuiltin(BuiltinOperator_ADD, registration, ParseAdd);\n}\n")
    tree = TflmTree(tmp_path, (), {})
    with pytest.raises(BuildError, match=r"'CONV_2D'.*'FULLY_CONNECTED'.*MicroMutableOpResolver"):
        write_model_sources(models[0]["int8"], tree, 4096, tmp_path / "out")


def test_incomplete_tree_names_the_missing_files(tmp_path) -> None:
    (tmp_path / "tensorflow/lite/micro").mkdir(parents=True)
    (tmp_path / "tensorflow/lite/micro/micro_interpreter.h").write_text("")
    (tmp_path / "sources.txt").write_text("tensorflow/lite/micro/micro_interpreter.cc\n")
    with pytest.raises(TflmTreeError) as err:
        load_tree(tmp_path)
    for missing in ("micro_mutable_op_resolver.h", "arm_nnfunctions.h", "micro_interpreter.cc"):
        assert missing in str(err.value)
