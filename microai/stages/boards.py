"""What the board stages of both frameworks share (MicroAI's compile/measure, TFLite Micro's
compile_tflm/measure_tflm): a build folder replaced only by a whole build, the run and estimates of an
image; and stage flash (flash_tflm too), which programs either framework's image."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from microai.config import write_json


def build_into(out_dir: Path, build: Callable[[Path], dict[str, Any]],
               fields: dict[str, Any]) -> dict[str, Any]:
    """Run ``build(folder)`` in a scratch folder, then replace ``out_dir`` with it and write its build.json
    (``fields`` + what ``build`` returned); a failed build leaves ``out_dir`` as it was."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        result = {**fields, **build(Path(tmp) / "build")}
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.move(str(Path(tmp) / "build"), out_dir)
    result["elf"] = str(out_dir / Path(result["elf"]).name)
    write_json(out_dir / "build.json", result)
    return result


def unavailable(build_json: Path) -> str | None:
    """The reason a build.json (or library.json) gives for not having been built, if any."""
    import json

    path = Path(build_json)
    return json.loads(path.read_text()).get("unavailable") if path.is_file() else None


def build_fields(build: Any) -> dict[str, Any]:
    """A BuildResult as JSON-ready values."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(build).items()}


def configured_board(board_name: str, board_cfg: dict[str, Any]):
    """The board with its params.yaml settings (port, probe; None: the default)."""
    from microai.deploy.boards import get_board

    return get_board(board_name, **{k: v for k, v in board_cfg.items() if v is not None})


def _energy_uwh(ms: float, board: Any) -> float:
    """The paper's energy: time x supply voltage x the board's run current, in micro-watt-hours."""
    return ms / 3.6e6 * board.supply_v * board.run_current_a * 1e6


def _measured(board: Any, counts: int) -> tuple[dict[str, Any], str]:
    """A run's mean per-inference count in the columns of what it is, and how the derived ones are made."""
    if board.run_counts == "instructions":
        return {"instructions": counts}, ""
    if board.run_counts == "ns":
        return {"host_wall_ms": counts / 1e6}, "; host_wall_ms: wall time of the native build on this machine"
    fields: dict[str, Any] = {"cycles": counts, "ms": counts / board.clock_hz * 1e3}
    derived = f"; ms = measured cycles at {board.clock_hz / 1e6:g} MHz"
    if board.run_current_a is not None:
        fields["energy_uwh"] = _energy_uwh(fields["ms"], board)
        derived += f"; energy_uwh = ms x {board.supply_v} V x {board.run_current_a * 1e3:g} mA (datasheet)"
    return fields, derived


def flash(board_name: str, board_cfg: dict[str, Any], elf: Path, out_json: Path) -> dict[str, Any]:
    """Program a real board (pyocd); an absent probe is recorded as "unavailable: <reason>", not an error,
    and so is an image whose build.json says why it could not be built."""
    from microai.deploy.errors import BoardUnavailable

    board = configured_board(board_name, board_cfg)
    not_built = unavailable(Path(elf).parent / "build.json")
    try:
        if not_built is not None:
            raise BoardUnavailable(f"no image: {not_built}")
        board.flash(Path(elf))
        status = "flashed" if board.physical else "loaded at run time (emulator or host)"
    except BoardUnavailable as e:
        status = f"unavailable: {e}"
    result = {"board": board_name, "elf": str(elf), "status": status}
    write_json(out_json, result)
    return result


def measure_board(board_name: str, board_cfg: dict[str, Any], build_json: Path, flash_json: Path,
                   timeout: float, emulated_elf: Path | None,
                   check: Callable[[np.ndarray], float]) -> dict[str, Any]:
    """Run an image (or estimate it on ``emulated_elf`` when the board is not attached): what measure and
    measure_tflm share; ``check(outputs)`` is the fraction of vectors equal to the framework's reference."""
    import json

    from microai.deploy.estimate import estimate_elf
    from microai.deploy.tflm.measure import arena_ram_bytes

    build = json.loads(Path(build_json).read_text())
    flashed = json.loads(Path(flash_json).read_text())
    board = configured_board(board_name, board_cfg)
    result: dict[str, Any] = {"board": board_name, "rom_bytes": build["rom_bytes"],
                              "ram_bytes": build["ram_bytes"], "vectors": build["vectors"]}
    how = [f"ROM: arm-none-eabi-size of the {board_name} ELF ({build['opt']}), test inputs excluded"]
    stack = arena = None
    if flashed["status"].startswith("unavailable"):
        result["note"] = f"not run on {board_name}: {flashed['status']}"
        if emulated_elf is None:
            raise ValueError(f"{board_name} is not attached and no qemu-m4 build was given to estimate")
        estimate_from, what = Path(emulated_elf), "the qemu-m4 build of the same code"
    else:
        run = board.run(Path(build["elf"]), timeout=timeout)
        result["outputs_match_reference"] = check(run.outputs)
        fields, measured_how = _measured(board, int(run.cycles.mean()))
        result.update(fields)
        stack, arena = run.stack_bytes_used, run.arena_bytes
        how.append(f"outputs + {run.how_measured}, {len(run.outputs)} test vectors{measured_how}")
        estimate_from, what = (Path(build["elf"]), "this ELF") if board.estimable else (None, "")
    if estimate_from is not None:
        est = estimate_elf(estimate_from, timeout=timeout)
        result["est_cycles"] = int(est.cycles_per_inference)
        result["est_ms"] = result["est_cycles"] / board.clock_hz * 1e3
        if board.run_current_a is not None:
            result["est_energy_uwh"] = _energy_uwh(result["est_ms"], board)
        result["layer_cycles"] = {k: int(v) for k, v in est.layer_cycles.items()}
        result["estimator"] = est.assumptions
        stack = stack if stack is not None else est.stack_bytes_used
        arena = arena or est.arena_bytes
        how.append(f"est_*: estimated with the Cortex-M4 timing model (Unicorn) on {what}, "
                   f"at {board.clock_hz / 1e6:g} MHz")
    if stack is not None:
        result["stack_bytes_used"] = int(stack)
        result["ram_bytes"] = arena_ram_bytes(build["data"], build["bss"], int(stack), arena)
        how.append("RAM = data + bss + stack high-water mark"
                   + (", tensor arena at the bytes used on the board" if arena else ""))
    if arena:
        result["arena_used_bytes"], result["arena_reserved_bytes"] = arena
    result["how_measured"] = "; ".join(how)
    return result
