"""Real-board firmware builds and links in CI; images that do not fit fail at link time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile
from test_deploy_support import needs_arm_gcc, standin_vectors, write_standin

from microai.deploy.boards import BOARDS, get_board
from microai.deploy.errors import BuildError, DoesNotFit

pytestmark = needs_arm_gcc

# Oversized table referenced from cnn() so --gc-sections keeps it.
BIG_TABLE = "const uint8_t big_table[{n}] = {{1}};"
USE_TABLE = "output[0] = big_table[input[0] & 0x7fff];"


@pytest.mark.parametrize(("name", "flash_origin", "ram_origin"), [
    ("nucleo-l452re-p", 0x08000000, 0x20000000),
    ("sparkfun-edge", 0x0000C000, 0x10000000),
])
def test_real_board_images_link_at_the_parts_addresses(tmp_path: Path, name: str, flash_origin: int,
                                                       ram_origin: int) -> None:
    board = get_board(name)
    x = standin_vectors(np.dtype(np.int16))
    build = board.build(write_standin(tmp_path / "lib"), x, tmp_path / "out")
    with build.elf.open("rb") as f:
        elf = ELFFile(f)
        vectors = elf.get_section_by_name(".isr_vector")
        assert vectors["sh_addr"] == flash_origin
        initial_sp, reset = np.frombuffer(vectors.data()[:8], dtype="<u4")
        assert initial_sp == elf.get_section_by_name(".stack")["sh_addr"] + board.stack_bytes
        assert ram_origin <= elf.get_section_by_name(".bss")["sh_addr"] < initial_sp
        assert reset & 1 and flash_origin < reset < flash_origin + build.rom_bytes
    assert build.board == name and 1000 < build.text < 16384  # harness + library, no printf
    assert build.stack_reserve == board.stack_bytes


def test_oversized_constant_does_not_fit_the_nucleo(tmp_path: Path) -> None:
    lib = write_standin(tmp_path / "lib", extra=BIG_TABLE.format(n=600 * 1024), body=USE_TABLE)
    with pytest.raises(DoesNotFit, match=r"does not fit nucleo-l452re-p: needs 60\d\.\d KiB flash / "
                                         r"8\.\d KiB RAM, has 512\.0 KiB flash / 128\.0 KiB RAM") as err:
        get_board("nucleo-l452re-p").build(lib, standin_vectors(np.dtype(np.int16)), tmp_path / "out")
    assert err.value.needs["FLASH"] > 600 * 1024 and err.value.has["FLASH"] == 512 * 1024


def test_the_same_image_fits_the_edge(tmp_path: Path) -> None:
    lib = write_standin(tmp_path / "lib", extra=BIG_TABLE.format(n=600 * 1024), body=USE_TABLE)
    build = get_board("sparkfun-edge").build(lib, standin_vectors(np.dtype(np.int16)), tmp_path / "out")
    assert build.rom_bytes > 600 * 1024


def test_stack_reserve_beyond_ram_does_not_fit(tmp_path: Path) -> None:
    board = get_board("nucleo-l452re-p", stack_bytes=130 * 1024)
    with pytest.raises(DoesNotFit, match=r"needs .* / 130\.\d KiB RAM"):
        board.build(write_standin(tmp_path / "lib"), standin_vectors(np.dtype(np.int16)), tmp_path / "out")


def test_qemu_memory_can_be_shrunk_to_a_real_part(tmp_path: Path) -> None:
    lib = write_standin(tmp_path / "lib", extra=BIG_TABLE.format(n=64 * 1024), body=USE_TABLE)
    x = standin_vectors(np.dtype(np.int16))
    assert get_board("qemu-m4").build(lib, x, tmp_path / "full").rom_bytes > 64 * 1024
    small = get_board("qemu-m4", flash_bytes=32 * 1024)
    with pytest.raises(DoesNotFit, match=r"does not fit qemu-m4: needs 6\d\.\d KiB flash .* has 32\.0 KiB"):
        small.build(lib, x, tmp_path / "small")


def test_library_mismatches_fail_with_context(tmp_path: Path) -> None:
    lib = write_standin(tmp_path / "lib")
    board = get_board("qemu-m4")
    with pytest.raises(BuildError, match="vectors are float, model_input_t differs"):
        board.build(lib, standin_vectors(np.dtype(np.float32)), tmp_path / "a")
    with pytest.raises(BuildError, match="vectors have 5 values, MODEL_INPUT_SIZE differs"):
        board.build(lib, np.zeros((1, 5), np.int16), tmp_path / "b")
    with pytest.raises(BuildError, match="dtype int64 unsupported"):
        board.build(lib, np.zeros((1, 8), np.int64), tmp_path / "c")
    (lib / "model.h").unlink()
    with pytest.raises(BuildError, match="lacks \\['model.h'\\]"):
        board.build(lib, np.zeros((1, 8), np.int16), tmp_path / "d")


def test_registry() -> None:
    assert set(BOARDS) == {"qemu-m4", "nucleo-l452re-p", "sparkfun-edge", "host"}
    boards_dir = Path(__file__).parents[1] / "firmware" / "boards"
    assert all((boards_dir / name / "board.c").is_file() for name in BOARDS)
    with pytest.raises(ValueError, match="unknown board 'esp32'; known boards"):
        get_board("esp32")


@pytest.mark.parametrize("name", ["qemu-m4", "host"])
def test_an_image_is_the_same_bytes_whatever_its_scratch_folder_and_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Debug information names folders: the scratch build folder (a random name) and the working
    directory are recorded under fixed names, so dvc.lock does not change with them."""
    board = get_board(name)
    x = standin_vectors(np.dtype(np.int16))
    images = []
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
        monkeypatch.chdir(tmp_path / where)
        lib = write_standin(Path("lib"))
        images.append(board.build(lib, x, Path(f"tmp{where}") / "build").elf.read_bytes())
    assert images[0] == images[1]
