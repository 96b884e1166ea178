"""One function per pipeline stage: what each Snakemake/DVC rule runs, callable from a notebook.

Each stage reads files, calls the library and writes its outputs atomically; the scripts in
``workflow/scripts`` are argparse wrappers around these functions.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from microai.config import section, write_json

# ----------------------------------------------------------------------------- data


def download(dataset: str, params: dict[str, Any], raw_dir: Path) -> Path:
    """Fetch a dataset's official archives (or check a local mirror) into ``raw_dir``."""
    from microai.data import download_dataset

    return download_dataset(dataset, section(params, "datasets", dataset), Path(raw_dir))


def prepare(dataset: str, params: dict[str, Any], raw_dir: Path, out_npz: Path) -> Path:
    """Official format -> the paper's preprocessing -> z-scored ``.npz``."""
    from microai.data import prepare_dataset

    return prepare_dataset(dataset, section(params, "datasets", dataset), Path(raw_dir), Path(out_npz))


# ---------------------------------------------------------------------------- train


def train_float(prepared_npz: Path, model: str, filters: int, run: int, params: dict[str, Any],
                out_ckpt: Path, out_metrics: Path, threads: int = 1) -> dict[str, Any]:
    """Train one float model (the run index is the seed); save checkpoint and metrics.

    ``threads`` sets the speed only: the checkpoint is the same bytes for any value.
    """
    import torch

    from microai.data import load_prepared
    from microai.models import build_model
    from microai.train import TrainConfig, evaluate, save_checkpoint, train

    data = load_prepared(Path(prepared_npz))
    dataset = Path(prepared_npz).stem
    cfg = TrainConfig.from_dict({**section(params, "train", dataset), "num_threads": threads})
    options = params.get("models", {}).get(model, {})
    torch.manual_seed(run)  # the initial weights too are drawn from the run's seed
    net = build_model(model, data.input_shape, data.num_classes, filters, **options)
    history = train(net, data.x_train, data.y_train, cfg, seed=run, x_val=data.x_test, y_val=data.y_test)
    metrics = {
        "dataset": dataset, "model": model, "filters": filters, "run": run,
        "test_accuracy": evaluate(net, data.x_test, data.y_test, threads=threads),
        "params": int(sum(p.numel() for p in net.parameters())),
        "history": history,
    }
    save_checkpoint(Path(out_ckpt), net, model, options, data.input_shape, data.num_classes, filters)
    write_json(out_metrics, metrics)
    return metrics


# ------------------------------------------------------------------------- quantize


def import_graph(ckpt: Path, prepared_npz: Path, out_graph: Path) -> None:
    """Trained PyTorch checkpoint -> float32 graph IR artifact (torch.fx)."""
    from microai.data import load_prepared
    from microai.graph.torch_import import from_torch
    from microai.train import load_checkpoint

    data = load_prepared(Path(prepared_npz))
    graph = from_torch(load_checkpoint(Path(ckpt)), data.input_shape, name=Path(ckpt).parent.parent.name)
    graph.save(out_graph)


def quantize_ptq(graph_path: Path, prepared_npz: Path, precision: dict[str, Any], out_graph: Path) -> None:
    """Post-training quantization calibrated on training data: the paper's power-of-two scheme (rounding to
    nearest unless the precision asks for the paper's floor/truncation), or TFLite's (``scheme: tflite``),
    calibrated like TFLite's converter on evenly spaced training inputs."""
    from microai.data import load_prepared
    from microai.graph import Graph
    from microai.quant.ptq import quantize_ptq as ptq

    data = load_prepared(Path(prepared_npz))
    if precision.get("scheme", "pow2") == "tflite":
        from microai.quant.affine import quantize_tflite
        from microai.tflite.convert import representative_samples

        calibration = representative_samples(data.x_train, precision.get("calibration_samples", 1000))
        quantized = quantize_tflite(Graph.load(graph_path), calibration,
                                    activations=precision.get("activations", 8),
                                    int16_layers=precision.get("int16_layers", ()))
        quantized.save(out_graph)
        return
    n = precision.get("calibration_samples", len(data.x_train))
    quantized = ptq(
        Graph.load(graph_path), data.x_train[:n], width=precision["width"],
        granularity=precision.get("granularity", "layer"), fixed_frac=precision.get("fixed_frac"),
        rounding=precision.get("rounding", "nearest"),
        quant_rounding=precision.get("quant_rounding", "nearest"),
    )
    quantized.save(out_graph)


def quantize_qat(ckpt: Path, prepared_npz: Path, run: int, qat_schedule: dict[str, Any],
                 precision: dict[str, Any], out_graph: Path, out_metrics: Path, threads: int = 1) -> None:
    """Quantization-aware training from the trained float model, exported with its learned formats.

    ``threads`` sets the speed only: the exported graph is the same for any value.
    """
    from microai.data import load_prepared
    from microai.quant.qat import export_qat, train_qat
    from microai.train import TrainConfig, load_checkpoint

    data = load_prepared(Path(prepared_npz))
    net = load_checkpoint(Path(ckpt))
    cfg = TrainConfig.from_dict({**qat_schedule, "num_threads": threads})
    if precision.get("scheme", "pow2") == "tflite":
        from microai.graph.torch_import import from_torch
        from microai.quant.affine_qat import train_qat_tflite

        graph, history = train_qat_tflite(
            from_torch(net, data.input_shape, name=Path(ckpt).parent.parent.name), data.x_train, data.y_train,
            cfg, seed=run, activations=precision.get("activations", 8),
            int16_layers=precision.get("int16_layers", ()),
            calibration_samples=precision.get("calibration_samples", 1000))
        graph.save(out_graph)
        write_json(out_metrics, {"run": run, "scheme": "tflite", "history": history})
        return
    qat_model, history = train_qat(
        net, data.x_train, data.y_train, cfg, width=precision["width"],
        seed=run, granularity=precision.get("granularity", "layer"),
        rounding=precision.get("rounding", "floor"), quant_rounding=precision.get("quant_rounding"),
    )
    graph = export_qat(qat_model, data.input_shape, precision["width"])
    graph.save(out_graph)
    write_json(out_metrics, {"run": run, "width": precision["width"], "history": history})


# ------------------------------------------------------------------------- evaluate


def evaluate(graph_path: Path, prepared_npz: Path, precision: str, out_json: Path) -> dict[str, Any]:
    """Test accuracy with the reference executor (float32 or exact integer arithmetic)."""
    from microai.data import load_prepared
    from microai.graph import Graph
    from microai.quant import reference
    from microai.quant.affine import param_bytes

    graph = Graph.load(graph_path)
    data = load_prepared(Path(prepared_npz))
    result = {
        "precision": precision,
        "graph_precision": graph.precision,
        "accuracy": reference.accuracy(graph, data.x_test, data.y_test),
        "test_vectors": int(len(data.y_test)),
        "params": graph.param_count(),
        "macs": graph.macs(),
        "param_bytes": param_bytes(graph),
        "synthetic": bool(data.provenance.get("synthetic", False)),
        "how_measured": "reference executor (numpy" + (", exact integer arithmetic)" if graph.is_quantized
                                                        else ", float32)"),
    }
    write_json(out_json, result)
    return result


# -------------------------------------------------------------------- TFLite, TFLM


def convert_tflite(graph_path: Path, prepared_npz: Path, params: dict[str, Any], out_float: Path,
                   out_int8: Path, threads: int = 1) -> None:
    """Float graph IR -> Keras -> ``float32.tflite`` and full-integer ``int8.tflite`` (TFLite's
    post-training quantization, calibrated on evenly spaced training inputs)."""
    from microai.data import load_prepared
    from microai.data.atomic import atomic_output
    from microai.graph import Graph
    from microai.tflite.convert import representative_samples, to_tflite

    graph = Graph.load(graph_path)
    count = section(params, "frameworks", "tflite-micro", "representative_samples")
    samples = representative_samples(load_prepared(Path(prepared_npz)).x_train, count)
    for precision, out in (("float32", out_float), ("int8", out_int8)):
        model = to_tflite(graph, precision, samples, threads=threads)
        with atomic_output(Path(out)) as tmp:
            tmp.write_bytes(model)


def evaluate_tflm(tflite_path: Path, graph_path: Path, prepared_npz: Path, precision: str,
                  out_json: Path) -> dict[str, Any]:
    """Accuracy of a ``.tflite`` model with the TFLM host runtime on the whole test set, its arena
    and operators; agreement of its predictions with the float graph on the reference executor."""
    from importlib.metadata import version

    from microai.data import load_prepared
    from microai.graph import Graph
    from microai.quant import reference
    from microai.tflite import runtime

    data = load_prepared(Path(prepared_npz))
    graph = Graph.load(graph_path)
    run = runtime.run_tflm(tflite_path, data.x_test)
    predicted = runtime.predict(run)
    arena = runtime.arena_bytes(tflite_path)
    result = {
        "framework": "tflite-micro",
        "precision": precision,
        "accuracy": float(np.mean(predicted == data.y_test)),
        "agreement_with_float_reference": float(np.mean(predicted == reference.predict(graph, data.x_test))),
        "test_vectors": int(len(data.y_test)),
        "params": graph.param_count(),
        "macs": graph.macs(),
        "model_bytes": Path(tflite_path).stat().st_size,
        "arena_bytes": arena.total,
        "arena_head_bytes": arena.head,
        "arena_tail_bytes": arena.tail,
        "operators": runtime.operators(tflite_path),
        "input": run.input.to_json(),
        "output": run.output.to_json(),
        "synthetic": bool(data.provenance.get("synthetic", False)),
        "how_measured": f"TFLM host runtime (PyPI tflite-micro {version('tflite-micro')}, x86-64), "
                        "whole test set; arena: its RecordingMicroAllocator",
    }
    if precision == "int8":
        from microai.tflite.engine import check_c_against_tflm

        result["how_measured"] += (f"; model: TensorFlow {version('tensorflow-cpu')} full-integer post-"
                                   "training quantization of the float model, calibrated on training inputs")
        result["microai_c"] = check_c_against_tflm(tflite_path, data.x_test, run)
        result["microai_c_matches_tflm"] = result["microai_c"]["matches"]
    write_json(out_json, result)
    return result


# -------------------------------------------------------------------------- codegen


def check_host(graph_path: Path, c_dir: Path, prepared_npz: Path, out_json: Path) -> dict[str, Any]:
    """Compile the generated C natively and compare it with the reference on the WHOLE test set."""
    import json

    from codegen.host import check_against_reference
    from microai.data import load_prepared
    from microai.graph import Graph

    graph = Graph.load(graph_path)
    data = load_prepared(Path(prepared_npz))
    check = check_against_reference(graph, Path(c_dir), data.x_test, data.y_test)
    report = json.loads((Path(c_dir) / "codegen_report.json").read_text())
    result = {**_jsonable(check), **{k: v for k, v in report.items() if k.startswith("activation_bytes")},
              "test_vectors": int(len(data.y_test)), "how_measured": "host build (cc), whole test set"}
    write_json(out_json, result)
    return result


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}


# ---------------------------------------------------------------------- deploy, run


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

    def build(folder: Path) -> dict[str, Any]:
        return _build_fields(board.build(Path(c_dir), packed, folder, opt=opt))

    return _build_into(Path(out_dir), build, {"board": board_name, "opt": opt, "vectors": vectors})


def _build_into(out_dir: Path, build: Callable[[Path], dict[str, Any]],
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


def _unavailable(build_json: Path) -> str | None:
    """The reason a build.json (or library.json) gives for not having been built, if any."""
    import json

    path = Path(build_json)
    return json.loads(path.read_text()).get("unavailable") if path.is_file() else None


def _build_fields(build: Any) -> dict[str, Any]:
    """A BuildResult as JSON-ready values."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(build).items()}


def _board(board_name: str, board_cfg: dict[str, Any]):
    from microai.deploy.boards import get_board

    return get_board(board_name, **{k: v for k, v in board_cfg.items() if v is not None})


def flash(board_name: str, board_cfg: dict[str, Any], elf: Path, out_json: Path) -> dict[str, Any]:
    """Program a real board (pyocd); an absent probe is recorded as "unavailable: <reason>", not an error,
    and so is an image whose build.json says why it could not be built."""
    from microai.deploy.errors import BoardUnavailable

    board = _board(board_name, board_cfg)
    not_built = _unavailable(Path(elf).parent / "build.json")
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
    from microai.quant import reference
    from microai.quant.compare import matching_vectors

    def check(outputs: np.ndarray) -> float:
        graph, x = _test_vectors(graph_path, prepared_npz, len(outputs))
        return float(matching_vectors(graph, outputs, reference.run(graph, x)).mean())

    result = _measure_board(board_name, board_cfg, build_json, flash_json, timeout, emulated_elf, check)
    write_json(out_json, result)
    return result


def _measure_board(board_name: str, board_cfg: dict[str, Any], build_json: Path, flash_json: Path,
                   timeout: float, emulated_elf: Path | None,
                   check: Callable[[np.ndarray], float]) -> dict[str, Any]:
    """What :func:`measure` and :func:`measure_tflm` share; ``check(outputs)`` is the fraction of
    vectors equal to the framework's reference."""
    import json

    from microai.deploy.estimate import estimate_elf
    from microai.deploy.tflm.measure import arena_ram_bytes

    build = json.loads(Path(build_json).read_text())
    flashed = json.loads(Path(flash_json).read_text())
    board = _board(board_name, board_cfg)
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


# -------------------------------------------------------------- TFLite Micro on boards


def tflm_library(params: dict[str, Any], opt: str, out_library: Path, threads: int = 1) -> dict[str, Any]:
    """TFLM + CMSIS-NN of the named tree as a static library for the Cortex-M4F boards at ``opt``:
    taken from the content-keyed cache (built there on a miss), copied to ``out_library``, described
    in ``<out_library>.json`` (path, cache key, -O level)."""
    from microai.data.atomic import atomic_output
    from microai.deploy.frameworks import unavailable_reason
    from microai.deploy.tflm.library import build_library
    from microai.deploy.tflm.tree import named_tree

    out_library = Path(out_library)
    reason = unavailable_reason("tflite-micro", "qemu-m4", params)
    if reason is not None:  # DVC runs every stage; Snakemake plans none of TFLM's board rules then
        result = {"unavailable": reason}
    else:
        library = build_library(named_tree(params), opt, jobs=threads)
        with atomic_output(out_library) as tmp:
            shutil.copyfile(library.archive, tmp)
        result = {"archive": str(out_library), "key": library.key, "opt": opt}
    write_json(out_library.with_suffix(".json"), result)
    return result


def compile_tflm_firmware(board_name: str, tflite: Path, library_json: Path, prepared_npz: Path, vectors: int,
                          opt: str, params: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Build a ``.tflite`` model with the TFLM adapter and library for a board, its first ``vectors``
    test inputs quantized as the TFLM host runtime feeds them.

    ``out_dir/build.json`` always results: a model that does not fit the board (the real link's
    answer), or no TFLM tree, gives ``{"unavailable": <reason>}`` there and no image.
    """
    import json

    from microai.data import load_prepared
    from microai.deploy.boards import get_board
    from microai.deploy.errors import DoesNotFit
    from microai.deploy.frameworks import unavailable_reason
    from microai.deploy.tflm.firmware import build_tflm_firmware
    from microai.deploy.tflm.library import TflmLibrary
    from microai.deploy.tflm.tree import named_tree
    from microai.tflite.runtime import arena_bytes, quantize_input

    board = get_board(board_name)
    described = json.loads(Path(library_json).read_text())
    fields = {"board": board_name, "opt": opt, "vectors": vectors, "framework": "tflite-micro"}
    reason = described.get("unavailable") or unavailable_reason("tflite-micro", board_name, params)
    if reason is not None:
        return _not_built(Path(out_dir), {**fields, "unavailable": reason})
    tree = named_tree(params)
    library = TflmLibrary.of(Path(described["archive"]), described["key"], tree, opt)
    inputs = quantize_input(tflite, load_prepared(Path(prepared_npz)).x_test[:vectors])
    host_arena = arena_bytes(tflite).total

    def build(folder: Path) -> dict[str, Any]:
        result, sources = build_tflm_firmware(board, Path(tflite), tree, library, host_arena,
                                              inputs.reshape(len(inputs), -1), folder, opt)
        return {**_build_fields(result), "host_arena_bytes": host_arena,
                "arena_reserved_bytes": sources.arena_bytes, "operators": list(sources.operators),
                "library": library.key, "elf_sha256": hashlib.sha256(result.elf.read_bytes()).hexdigest()}

    try:
        return _build_into(Path(out_dir), build, fields)
    except DoesNotFit as e:
        return _not_built(Path(out_dir), {**fields, "unavailable": str(e), "needs": e.needs, "has": e.has})


def _not_built(out_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """A build folder holding only a build.json that says why there is no image."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    write_json(out_dir / "build.json", result)
    return result


def measure_tflm(board_name: str, board_cfg: dict[str, Any], build_json: Path, flash_json: Path, tflite: Path,
                 prepared_npz: Path, timeout: float, out_json: Path,
                 emulated_elf: Path | None = None) -> dict[str, Any]:
    """:func:`measure` for a TFLM image: outputs compared bit for bit with the TFLM host runtime's on the
    same vectors, cycles per operator, RAM with the tensor arena at the bytes TFLM used on the board."""
    from importlib.metadata import version

    from microai.data import load_prepared
    from microai.deploy.tflm.measure import outputs_match
    from microai.tflite.runtime import run_tflm

    reason = _unavailable(build_json)
    if reason is not None:
        result = {"board": board_name, "framework": "tflite-micro", "note": f"unavailable: {reason}"}
        write_json(out_json, result)
        return result

    def check(outputs: np.ndarray) -> float:
        x = load_prepared(Path(prepared_npz)).x_test[:len(outputs)]
        return float(outputs_match(run_tflm(tflite, x).outputs, outputs).mean())

    result = _measure_board(board_name, board_cfg, build_json, flash_json, timeout, emulated_elf, check)
    result["framework"] = "tflite-micro"
    result["how_measured"] += ("; outputs compared bit for bit with the TFLM host runtime (PyPI tflite-micro "
                               f"{version('tflite-micro')}); cycles per operator: from entering its "
                               "kernel's invoke function to returning")
    write_json(out_json, result)
    return result


# --------------------------------------------------------------------------- report


def aggregate(results: list[Path], params: dict[str, Any], out_table: Path, out_paper_table: Path,
              out_figure: Path) -> None:
    """All per-run results -> results/tables.csv (long format), the paper's A3-A5 layout, a figure."""
    from microai.deploy.frameworks import unavailable_rows
    from microai.report.figures import summary_figure
    from microai.report.tables import paper_layout, read_results, results_table, write_csv

    sweep = params["sweep"]
    boards = list(sweep["boards"])
    unavailable = unavailable_rows(list(sweep.get("frameworks", ["microai"])), boards, params)
    table = results_table(read_results(results), boards, unavailable)
    if table.empty:
        raise ValueError("no evaluation results to aggregate")
    write_csv(table, out_table)
    write_csv(paper_layout(table), out_paper_table)
    summary_figure(table, out_figure)


def quantize(precision_name: str, params: dict[str, Any], ckpt: Path, prepared_npz: Path, run: int,
             out_graph: Path, out_metrics: Path, threads: int = 1) -> None:
    """Any precision from the trained checkpoint, dispatched on its method (float / ptq / qat).

    DVC's matrix stages cannot select precisions by method, so its single ``quantize`` stage
    calls this; Snakemake has one rule per method.
    """
    precision = section(params, "precisions", precision_name)
    method = precision["method"]
    with tempfile.TemporaryDirectory() as tmp:
        float_graph = Path(tmp) / "float32.json"
        import_graph(ckpt, prepared_npz, float_graph)
        if method == "float":
            from microai.graph import Graph

            Graph.load(float_graph).save(out_graph)
        elif method == "ptq":
            quantize_ptq(float_graph, prepared_npz, precision, out_graph)
        else:
            schedule = section(params, "qat", Path(prepared_npz).stem)
            quantize_qat(ckpt, prepared_npz, run, schedule, precision, out_graph, out_metrics, threads)
            return
    write_json(out_metrics, {"run": run, "method": method, "precision": precision})
