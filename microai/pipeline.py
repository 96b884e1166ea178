"""The pipeline's stages as data: the one definition that Snakemake's rules and dvc.yaml are made from.

Each :class:`Stage` names its script, the sweep dimensions it runs over, its input and output
path patterns, the parameters it reads and the code that computes it. :mod:`microai.snakemake_rules`
writes every entry as a rule of ``workflow/rules/<n>_<family>.smk`` and :mod:`microai.dvc_yaml` as a
DVC matrix stage, so adding a stage is adding one entry (and its script) and running ``make
workflow-files``. Paths use ``{dimension}`` placeholders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microai.report import FIGURES, PLOT_DATA

ROOT = Path(__file__).resolve().parent.parent

#: The sweep dimensions and the params.yaml list each one takes its values from (a stage may
#: restrict one to fixed values, see Stage.values).
DIMENSIONS = {
    "dataset": "sweep.datasets",
    "model": "sweep.models",
    "filters": "sweep.filters",
    "run": "sweep.runs",
    "precision": "sweep.precisions",
    "board": "sweep.boards",
}
DATASET = ("dataset",)
MODEL = ("dataset", "model", "filters", "run")
PRECISION = (*MODEL, "precision")
BOARD = (*PRECISION, "board")

RAW = "data/raw/{dataset}"
PREPARED = "data/prepared/{dataset}.npz"
MODEL_DIR = "results/models/{dataset}/{model}-f{filters}/run{run}"
RUN_DIR = "results/runs/{dataset}/{model}-f{filters}/run{run}"
BUILD_DIR = "build/{dataset}/{model}-f{filters}/run{run}/{precision}"
GRAPH = MODEL_DIR + "/{precision}.json"  # a graph IR artifact: structure + formats ...
WEIGHTS = MODEL_DIR + "/{precision}.npz"  # ... and its weights
FIRMWARE = BUILD_DIR + "/{board}"
#: Every board can be built: a real board that is not attached takes its cycle estimate from the
#: qemu-m4 build of the same code, whether or not qemu-m4 is swept.
EMULATED_ELF = BUILD_DIR + "/qemu-m4/firmware.elf"
#: The aggregate stage's input: every per-run result of the current sweep (see sweep_results).
SWEEP_RESULTS = "results/runs"
#: TFLite Micro has float32 and int8 (TFLite's post-training quantization) models, no int16.
TFLM_PRECISIONS = ("float32", "int8")
FLOAT_GRAPH = MODEL_DIR + "/float32.json"
FLOAT_WEIGHTS = MODEL_DIR + "/float32.npz"
TFLITE = MODEL_DIR + "/{precision}.tflite"
#: TFLite Micro on the boards: one library for every Cortex-M4F board (same compiler and flags, from a
#: content-keyed cache), the .tflite models built with the TFLM adapter per board.
TFLM_LIBRARY = "build/tflm/cortex-m4f/libtflm.a"
TFLM_LIBRARY_JSON = "build/tflm/cortex-m4f/libtflm.json"  # its description, written beside it
TFLM_FIRMWARE = BUILD_DIR.replace("{precision}", "tflite-micro/{precision}") + "/{board}"
TFLM_EMULATED_ELF = TFLM_FIRMWARE.replace("{board}", "qemu-m4") + "/firmware.elf"

#: Code every stage script runs: argument parsing, parameter loading, the stage functions' package
#: (and the data package, whose errors the command line reports).
COMMON_CODE = ("microai/__init__.py", "microai/cli.py", "microai/config.py", "microai/stages/__init__.py",
               "microai/data")
#: The graph IR and everything that reads it: operators, quantization, the reference, codegen.
GRAPH_CODE = ("microai/graph", "microai/ops", "microai/quant", "codegen")
#: The board stages of both frameworks: their shared bodies (build folders, run + estimates, flash), the
#: boards, the TFLM measurement (its reference: the TFLM host runtime).
BOARD_CODE = ("microai/stages/boards.py", "microai/data", "microai/deploy", "microai/tflite")
SOURCE_SUFFIXES = {".py", ".j2", ".c", ".h", ".ld", ".cc", ".s", ".S"}


@dataclass(frozen=True)
class Output:
    """An output path. ``kind``: ``file``; ``dir`` (a folder); ``git`` (small text kept in git, e.g.
    metrics and plot data that ``dvc metrics/plots diff`` compare across commits).
    ``report``: the caption file (workflow/report/<name>.rst) when Snakemake's report shows it."""

    path: str
    kind: str = "file"
    report: str | None = None


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: ``python workflow/scripts/<script> [--params FILE] <args>`` (or, with
    ``module`` None, ``python <script> <args>``, a library's own command line).

    ``args`` refers to ``{input.<name>}``, ``{output.<name>}`` and ``{<dimension>}``.
    ``params`` are dotted params.yaml keys that may use dimensions (``train.{dataset}``); a key
    ending in ``?`` may be absent (DVC then depends on its parent section).
    ``code`` lists the library folders/files the stage computes with (besides its script, its
    module in microai/stages and COMMON_CODE). ``local``: runs on the submitting machine, never as
    a cluster job (network, attached boards, quick work). ``threaded``: gets ``--threads``.
    ``deploy_runs``: only the runs of ``deploy.runs`` are built and measured. ``values``: fixed
    values of a dimension for this stage (TFLite has float32 and int8 only). ``facts``: names of
    ENVIRONMENT_FACTS whose change reruns the stage under Snakemake (DVC tracks files and params
    only).
    """

    name: str
    script: str
    module: str | None
    over: tuple[str, ...]
    args: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, Output]
    params: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    local: bool = False
    threaded: bool = False
    deploy_runs: bool = False
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    facts: tuple[str, ...] = ()
    doc: str = ""

    def code_paths(self) -> list[str]:
        """Repository paths (files or folders) whose change reruns this stage."""
        if self.module is None:  # a library's own command line (python -m codegen)
            return list(self.code)
        own = [f"workflow/scripts/{self.script}", f"microai/stages/{self.module}.py"]
        return list(dict.fromkeys([*own, *COMMON_CODE, *self.code]))

    def code_files(self, root: Path = ROOT) -> list[str]:
        """code_paths() with folders expanded to their source files (absolute paths)."""
        files = []
        for p in self.code_paths():
            path = root / p
            files += [str(path)] if path.is_file() else sorted(
                str(f) for f in path.rglob("*")
                if f.suffix in SOURCE_SUFFIXES and "__pycache__" not in f.parts)
        return list(dict.fromkeys(files))  # a file may be named by two entries (a folder and a file in it)

    def log(self) -> str:
        """Log path pattern: one log per job."""
        parts = {"dataset": "/{dataset}", "model": "/{model}", "filters": "-f{filters}", "run": "/run{run}",
                 "precision": "/{precision}", "board": "/{board}"}
        return f"logs/{self.name}" + "".join(parts[d] for d in self.over) + ".log"


def _out(path: str, kind: str = "file", report: str | None = None) -> Output:
    return Output(path, kind, report)


STAGES: tuple[Stage, ...] = (
    Stage(
        name="download", script="download.py", module="data", over=DATASET,
        doc="fetch the dataset's official archives (sha256-checked) or its local copy",
        args="--dataset {dataset} --raw-dir {output.raw}",
        inputs={}, outputs={"raw": _out(RAW, "dir")},
        params=("datasets.{dataset}",), code=("microai/data",), local=True,
    ),
    Stage(
        name="prepare", script="prepare.py", module="data", over=DATASET,
        doc="official format -> the paper's preprocessing -> z-scored arrays",
        args="--dataset {dataset} --raw-dir {input.raw} --out {output.prepared}",
        inputs={"raw": RAW}, outputs={"prepared": _out(PREPARED)},
        params=("datasets.{dataset}",), code=("microai/data",),
    ),
    Stage(
        name="train_float", script="train_float.py", module="train", over=MODEL,
        doc="float training (SGD + momentum, multi-step schedule, mixup); the run index is the seed",
        args="--data {input.data} --model {model} --filters {filters} --run {run}"
             " --out {output.checkpoint} --metrics {output.history}",
        inputs={"data": PREPARED},
        outputs={"checkpoint": _out(MODEL_DIR + "/float32.pt"),
                 "history": _out(MODEL_DIR + "/float32.train.json")},
        params=("train.{dataset}", "models.{model}"),
        code=("microai/data", "microai/models", "microai/train"),
        threaded=True,
    ),
    Stage(
        name="quantize", script="quantize.py", module="quant", over=PRECISION,
        doc="graph IR of the trained model in one precision: float32 as trained, PTQ formats, or QAT",
        args="--checkpoint {input.checkpoint} --data {input.data} --run {run} --precision {precision}"
             " --out {output.graph} --metrics {output.history}",
        inputs={"checkpoint": MODEL_DIR + "/float32.pt", "data": PREPARED},
        outputs={"graph": _out(GRAPH), "weights": _out(WEIGHTS),
                 "history": _out(MODEL_DIR + "/{precision}.quant.json")},
        params=("precisions.{precision}", "qat.{dataset}?"),
        code=("microai/data", "microai/models", "microai/train", "microai/tflite", *GRAPH_CODE),
        threaded=True,
    ),
    Stage(
        name="evaluate", script="evaluate.py", module="accuracy", over=PRECISION,
        doc="test accuracy with the reference executor (exact integer arithmetic for quantized graphs)",
        args="--graph {input.graph} --data {input.data} --precision {precision} --out {output.result}",
        inputs={"graph": GRAPH, "weights": WEIGHTS, "data": PREPARED},
        outputs={"result": _out(RUN_DIR + "/{precision}.eval.json")},
        code=("microai/data", *GRAPH_CODE),
    ),
    Stage(
        name="convert_tflite", script="convert_tflite.py", module="tflite", over=MODEL,
        doc="float graph IR -> Keras -> float32 and int8 (TFLite post-training quantization) .tflite",
        args="--graph {input.graph} --data {input.data}"
             " --out-float {output.float32} --out-int8 {output.int8}",
        inputs={"graph": FLOAT_GRAPH, "weights": FLOAT_WEIGHTS, "data": PREPARED},
        outputs={"float32": _out(MODEL_DIR + "/float32.tflite"), "int8": _out(MODEL_DIR + "/int8.tflite")},
        params=("frameworks.tflite-micro.representative_samples",),
        code=("microai/data", "microai/tflite", *GRAPH_CODE), threaded=True,
    ),
    Stage(
        name="evaluate_tflm", script="evaluate_tflm.py", module="tflite", over=PRECISION,
        values={"precision": TFLM_PRECISIONS},
        doc="accuracy and arena of a .tflite model in the TFLite Micro host runtime",
        args="--tflite {input.tflite} --graph {input.graph} --data {input.data} --precision {precision}"
             " --out {output.result}",
        inputs={"tflite": TFLITE, "graph": FLOAT_GRAPH, "weights": FLOAT_WEIGHTS, "data": PREPARED},
        outputs={"result": _out(RUN_DIR + "/tflite-micro/{precision}.eval.json")},
        code=("microai/data", "microai/tflite", *GRAPH_CODE),
    ),
    Stage(
        name="generate_c", script="-m codegen", module=None, over=PRECISION, deploy_runs=True,
        doc="C library from the graph IR (codegen)",
        args="{input.graph} -o {output.c}",
        inputs={"graph": GRAPH, "weights": WEIGHTS}, outputs={"c": _out(BUILD_DIR + "/c", "dir")},
        code=("microai/__init__.py", "microai/tflite", *GRAPH_CODE), local=True,
    ),
    Stage(
        name="check_host", script="check_host.py", module="host", over=PRECISION, deploy_runs=True,
        doc="generated C built natively, compared with the reference executor on the whole test set",
        args="--graph {input.graph} --c-dir {input.c} --data {input.data} --out {output.result}",
        inputs={"graph": GRAPH, "weights": WEIGHTS, "c": BUILD_DIR + "/c", "data": PREPARED},
        outputs={"result": _out(RUN_DIR + "/{precision}.check.json")},
        code=("microai/data", *GRAPH_CODE),
    ),
    Stage(
        name="compile", script="compile.py", module="deploy", over=BOARD, deploy_runs=True,
        doc="firmware harness + generated C cross-compiled per board (ROM, RAM, does it fit)",
        args="--board {board} --c-dir {input.c} --graph {input.graph} --data {input.data}"
             " --elf {output.elf} --build {output.build}",
        inputs={"c": BUILD_DIR + "/c", "graph": GRAPH, "weights": WEIGHTS, "data": PREPARED},
        outputs={"elf": _out(FIRMWARE + "/firmware.elf"), "build": _out(FIRMWARE + "/build.json")},
        params=("deploy.vectors", "deploy.opt"),
        code=(*BOARD_CODE, "firmware", *GRAPH_CODE), local=True,
    ),
    Stage(
        name="flash", script="flash.py", module="boards", over=BOARD, deploy_runs=True,
        doc="program an attached board (pyocd); the emulator and the host load the ELF at run time",
        args="--board {board} --elf {input.elf} --out {output.status}",
        inputs={"elf": FIRMWARE + "/firmware.elf"}, outputs={"status": _out(FIRMWARE + "/flash.json")},
        params=("boards.{board}?",), code=BOARD_CODE, local=True,
    ),
    Stage(
        name="measure", script="measure.py", module="deploy", over=BOARD, deploy_runs=True,
        doc="run on the board (emulated or real), outputs checked against the reference executor,"
            " cycles, estimated time and energy at 48 MHz",
        args="--board {board} --build {input.build} --flash {input.flash} --graph {input.graph}"
             " --data {input.data} --emulated-elf {input.emulated_elf} --out {output.result}",
        inputs={"build": FIRMWARE + "/build.json", "elf": FIRMWARE + "/firmware.elf",
                "flash": FIRMWARE + "/flash.json", "graph": GRAPH, "weights": WEIGHTS, "data": PREPARED,
                "emulated_elf": EMULATED_ELF},
        outputs={"result": _out(RUN_DIR + "/{precision}.{board}.json")},
        params=("boards.{board}?", "deploy.timeout_s"),
        code=(*BOARD_CODE, *GRAPH_CODE), local=True,
    ),
    # TFLite Micro on the boards, with the same harness and line protocol. Without a TFLM tree these
    # stages record "unavailable: <reason>" instead of building (DVC runs them all; Snakemake plans them
    # only for the boards sweep_results asks for); the ELF is tracked through build.json's elf_sha256.
    Stage(
        name="tflm_library", script="tflm_library.py", module="tflm", over=(),
        doc="TFLM + CMSIS-NN of the named tree as a static library for the Cortex-M4F boards (cached)",
        args="--out " + TFLM_LIBRARY,
        inputs={}, outputs={"manifest": _out(TFLM_LIBRARY_JSON)},
        params=("frameworks.tflite-micro.source", "deploy.opt"), facts=("tflm_tree", "tflm_library_key"),
        code=BOARD_CODE, threaded=True,
    ),
    Stage(
        name="compile_tflm", script="compile_tflm.py", module="tflm", over=BOARD, deploy_runs=True,
        values={"precision": TFLM_PRECISIONS},
        doc="a .tflite model + the TFLM adapter + library per board (ROM, RAM; a model that does not fit"
            " gives a build.json saying so)",
        args="--board {board} --tflite {input.tflite} --library {input.library} --data {input.data}"
             " --build {output.build}",
        inputs={"tflite": TFLITE, "library": TFLM_LIBRARY_JSON, "data": PREPARED},
        outputs={"build": _out(TFLM_FIRMWARE + "/build.json")},
        params=("frameworks.tflite-micro.source", "deploy.vectors", "deploy.opt"), facts=("tflm_tree",),
        code=(*BOARD_CODE, "firmware"), local=True,
    ),
    Stage(
        name="flash_tflm", script="flash.py", module="boards", over=BOARD, deploy_runs=True,
        values={"precision": TFLM_PRECISIONS},
        doc="program an attached board with the TFLM image (as flash)",
        args="--board {board} --elf " + TFLM_FIRMWARE + "/firmware.elf --out {output.status}",
        inputs={"build": TFLM_FIRMWARE + "/build.json"},
        outputs={"status": _out(TFLM_FIRMWARE + "/flash.json")},
        params=("boards.{board}?",), code=BOARD_CODE, local=True,
    ),
    Stage(
        name="measure_tflm", script="measure_tflm.py", module="tflm", over=BOARD, deploy_runs=True,
        values={"precision": TFLM_PRECISIONS},
        doc="run the TFLM image, outputs bit for bit against the TFLM host runtime, cycles per operator",
        args="--board {board} --build {input.build} --flash {input.flash} --tflite {input.tflite}"
             " --data {input.data} --emulated-elf " + TFLM_EMULATED_ELF + " --out {output.result}",
        inputs={"build": TFLM_FIRMWARE + "/build.json", "flash": TFLM_FIRMWARE + "/flash.json",
                "tflite": TFLITE, "data": PREPARED,
                "emulated": TFLM_EMULATED_ELF.replace("firmware.elf", "build.json")},
        outputs={"result": _out(RUN_DIR + "/tflite-micro/{precision}.{board}.json")},
        params=("boards.{board}?", "deploy.timeout_s"),
        code=BOARD_CODE, local=True,
    ),
    Stage(
        name="aggregate", script="aggregate.py", module="report", over=(),
        doc="every result of the sweep into the tables, metrics, plot data and the paper's figures",
        args="--runs " + SWEEP_RESULTS + " --out-dir results",
        inputs={"runs": SWEEP_RESULTS},
        outputs={
            "table": _out("results/tables.csv", report="tables"),
            "paper": _out("results/paper_tables.csv", report="paper_tables"),
            "metrics": _out("results/metrics.json", "git"),
            "provenance": _out("results/provenance.json", "git"),
            **{f"plot_{name}": _out(f"results/plots/{name}.csv", "git") for name in PLOT_DATA},
            **{f"figure_{name}": _out(f"results/figures/{name}.png", report=name) for name in FIGURES},
        },
        params=("sweep", "deploy.runs"), facts=("tflm_tree",), local=True,
        code=("microai/report", "microai/deploy", "microai/tflite", "microai/pipeline.py"),
    ),
)

STAGE_BY_NAME = {s.name: s for s in STAGES}

#: The paper's stage families in the order data flows, with what each does; one rules file each
#: (workflow/rules/<n>_<family>.smk). Every stage belongs to exactly one (tested).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "data": ("official dataset archives -> prepared arrays", ("download", "prepare")),
    "train": ("float training of each model, filter count and run", ("train_float",)),
    "quantize": ("each precision's graph IR (PTQ or QAT) and its test accuracy; TFLite's own conversion"
                 " and the TFLite Micro host runtime's accuracy",
                 ("quantize", "evaluate", "convert_tflite", "evaluate_tflm")),
    "deploy": ("C code generated and checked on the host, firmware built and flashed per board, for"
               " MicroAI and TFLite Micro",
               ("generate_c", "check_host", "compile", "flash",
                "tflm_library", "compile_tflm", "flash_tflm")),
    "measure": ("inference on the board (emulated or real): outputs checked, cycles, time, energy",
                ("measure", "measure_tflm")),
    "report": ("the sweep's results into tables, metrics, plot data and the paper's figures", ("aggregate",)),
}


def tflm_tree(params: dict[str, Any]) -> str:
    """The TFLite Micro tree the tflite-micro rows depend on (params, else MICROAI_TFLM_TREE), or why
    there is none: naming, moving or removing the tree reruns the stages that read it."""
    from microai.tflite.tree import NoTFLMTree, find_tree

    try:
        return str(find_tree(params))
    except NoTFLMTree as err:
        return f"unavailable: {err}"


def tflm_library_key(params: dict[str, Any]) -> str:
    """Compiler, flags and tree content of the TFLM library (its cache key), or why there is no tree:
    any change rebuilds the library."""
    from microai.deploy.tflm.library import library_key
    from microai.deploy.tflm.tree import TflmTreeError, named_tree
    from microai.tflite.tree import NoTFLMTree

    try:
        return library_key(named_tree(params), params["deploy"]["opt"])
    except (NoTFLMTree, TflmTreeError) as err:  # the library stage, if planned, names what is wrong
        return f"unavailable: {err}"


#: Facts of this machine a stage's results depend on, beside its files and parameters.
ENVIRONMENT_FACTS = {"tflm_tree": tflm_tree, "tflm_library_key": tflm_library_key}


def check_resources(params: dict[str, Any], source: str) -> None:
    """``resources.stages`` may only name stages of the table (a typo would be silently ignored)."""
    unknown = sorted(set(params.get("resources", {}).get("stages", {})) - set(STAGE_BY_NAME))
    if unknown:
        raise ValueError(f"{source}: resources.stages names unknown stage(s) {unknown}; "
                         f"stages: {sorted(STAGE_BY_NAME)}")


def fill_dimensions(text: str, replacement: str) -> str:
    """Every ``{dimension}`` placeholder of ``text`` rewritten with ``replacement`` (``\\1`` is its name):
    ``{wildcards.\\1}`` for Snakemake, ``${item.\\1}`` for DVC."""
    return re.sub(r"\{(" + "|".join(DIMENSIONS) + r")\}", replacement, text)


def deploy_runs(params: dict[str, Any]) -> list[int]:
    """The runs that are compiled and measured on boards."""
    return [r for r in params["deploy"]["runs"] if r in params["sweep"]["runs"]]


def sweep_results(params: dict[str, Any], root: str | Path = SWEEP_RESULTS) -> list[Path]:
    """Every per-run result file of the sweep in ``params`` (exactly those: an older sweep's files
    lying beside them are not read)."""
    sweep = params["sweep"]
    root = Path(root)
    files = []
    for dataset in sweep["datasets"]:
        for model in sweep["models"]:
            for filters in sweep["filters"]:
                for run in sweep["runs"]:
                    folder = root / dataset / f"{model}-f{filters}" / f"run{run}"
                    for precision in sweep["precisions"]:
                        files.append(folder / f"{precision}.eval.json")
                        if run in deploy_runs(params):
                            files.append(folder / f"{precision}.check.json")
                            files += [folder / f"{precision}.{board}.json" for board in sweep["boards"]]
                    if "tflite-micro" in sweep.get("frameworks", []):
                        files += [folder / "tflite-micro" / f"{p}.eval.json" for p in TFLM_PRECISIONS]
                        if run in deploy_runs(params):
                            files += [folder / "tflite-micro" / f"{p}.{board}.json" for p in TFLM_PRECISIONS
                                      for board in tflm_boards(params)]
    return files


def tflm_boards(params: dict[str, Any]) -> list[str]:
    """The swept boards TFLite Micro is built and measured on: none without a TFLM tree."""
    from microai.deploy.frameworks import unavailable_reason

    return [b for b in params["sweep"]["boards"] if unavailable_reason("tflite-micro", b, params) is None]
