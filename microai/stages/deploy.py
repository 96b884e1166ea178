"""Stages compile, flash and measure: firmware per board, programming, run + estimates."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from microai.config import write_json


def _test_vectors(graph_path: Path, prepared_npz: Path, count: int):
    """The graph and the first ``count`` test inputs: what the firmware embeds and is checked on."""
    from microai.data import load_prepared
    from microai.graph import Graph

    return Graph.load(graph_path), load_prepared(Path(prepared_npz)).x_test[:count]


def compile_firmware(board_name: str, c_dir: Path, graph_path: Path, prepared_npz: Path, vectors: int,
                     opt: str, out_dir: Path) -> dict[str, Any]:
    """Cross-compile the harness + generated C for a board; fails with DoesNotFit naming the limits."""
    from codegen import pack_input
    from microai.deploy.boards import get_board

    board = get_board(board_name)
    packed = pack_input(*_test_vectors(graph_path, prepared_npz, vectors))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent) as tmp:
        build = board.build(Path(c_dir), packed, Path(tmp) / "build", opt=opt)
        result = {"board": board_name, "opt": opt, "vectors": vectors, **_build_fields(build)}
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.move(str(Path(tmp) / "build"), out_dir)
    result["elf"] = str(out_dir / Path(result["elf"]).name)
    write_json(out_dir / "build.json", result)
    return result


def _build_fields(build: Any) -> dict[str, Any]:
    """A BuildResult as JSON-ready values."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(build).items()}


def _board(board_name: str, board_cfg: dict[str, Any]):
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
    """Program a real board (pyocd); an absent probe is recorded as "unavailable: <reason>", not an error."""
    from microai.deploy.errors import BoardUnavailable

    board = _board(board_name, board_cfg)
    try:
        board.flash(Path(elf))
        status = "flashed" if board.physical else "loaded at run time (emulator or host)"
    except BoardUnavailable as e:
        status = f"unavailable: {e}"
    result = {"board": board_name, "elf": str(elf), "status": status}
    write_json(out_json, result)
    return result


def measure(board_name: str, board_cfg: dict[str, Any], build_json: Path, flash_json: Path, graph_path: Path,
            prepared_npz: Path, timeout: float, out_json: Path,
            emulated_elf: Path | None = None) -> dict[str, Any]:
    """Run the firmware, check its outputs against the reference executor, estimate time and energy.

    What a run measures goes in columns of its own: an attached board's DWT ``cycles`` with the
    ``ms`` and ``energy_uwh`` they give at the board's clock, QEMU's ``instructions``, the host's
    ``host_wall_ms``. Estimates of the Cortex-M4 timing model (Unicorn) are ``est_cycles``,
    ``est_ms`` and ``est_energy_uwh`` at the board's clock (48 MHz, as in the paper). A real board
    that is not attached is not run: its row keeps its own ROM, and the cycle estimate and stack
    high-water mark come from ``emulated_elf``, the qemu-m4 build of the same generated code.
    """
    import json

    from microai.deploy.estimate import estimate_elf
    from microai.quant import reference
    from microai.quant.compare import matching_vectors

    build = json.loads(Path(build_json).read_text())
    flashed = json.loads(Path(flash_json).read_text())
    board = _board(board_name, board_cfg)
    result: dict[str, Any] = {"board": board_name, "rom_bytes": build["rom_bytes"],
                              "ram_bytes": build["ram_bytes"], "vectors": build["vectors"]}
    how = [f"ROM: arm-none-eabi-size of the {board_name} ELF ({build['opt']}), test inputs excluded"]
    stack = None
    if flashed["status"].startswith("unavailable"):
        result["note"] = f"not run on {board_name}: {flashed['status']}"
        if emulated_elf is None:
            raise ValueError(f"{board_name} is not attached and no qemu-m4 build was given to estimate")
        estimate_from, what = Path(emulated_elf), "the qemu-m4 build of the same code"
    else:
        graph, x = _test_vectors(graph_path, prepared_npz, build["vectors"])
        run = board.run(Path(build["elf"]), timeout=timeout)
        expected = reference.run(graph, x)
        result["outputs_match_reference"] = float(matching_vectors(graph, run.outputs, expected).mean())
        fields, measured_how = _measured(board, int(run.cycles.mean()))
        result.update(fields)
        stack = run.stack_bytes_used
        how.append(f"outputs + {run.how_measured}, {len(x)} test vectors{measured_how}")
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
        how.append(f"est_*: estimated with the Cortex-M4 timing model (Unicorn) on {what}, "
                   f"at {board.clock_hz / 1e6:g} MHz")
    if stack is not None:
        result["stack_bytes_used"] = int(stack)
        result["ram_bytes"] = build["data"] + build["bss"] + int(stack)
        how.append("RAM = data + bss + stack high-water mark")
    result["how_measured"] = "; ".join(how)
    write_json(out_json, result)
    return result
