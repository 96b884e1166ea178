# Shared by every rule: parameter validation (before any rule runs), wildcard constraints, paths.
import json
import sys
from pathlib import Path

from microai.config import ConfigError, validate_params
from microai.deploy.frameworks import unavailable_reason
from microai.tflite.tree import NoTFLMTree, find_tree

try:
    validate_params(config, "configuration (params.yaml / --configfile / --config)")
except ConfigError as err:
    raise WorkflowError(str(err)) from None

SWEEP = config["sweep"]
# Every board can be built: a real board that is not attached takes its cycle estimate from the
# qemu-m4 build of the same code (EMULATED_BUILD), whether or not qemu-m4 is swept.
BOARDS = ["qemu-m4", "nucleo-l452re-p", "sparkfun-edge", "host"]
PRECISIONS = config["precisions"]
PTQ_PRECISIONS = [p for p in SWEEP["precisions"] if PRECISIONS[p]["method"] == "ptq"]
QAT_PRECISIONS = [p for p in SWEEP["precisions"] if PRECISIONS[p]["method"] == "qat"]
DEPLOY_RUNS = [r for r in config["deploy"]["runs"] if r in SWEEP["runs"]]
FRAMEWORKS = SWEEP.get("frameworks", ["microai"])
# TFLite Micro has float32 and int8 (TFLite's post-training quantization) models, no int16.
TFLM_PRECISIONS = ["float32", "int8"]
# The interpreter running Snakemake (the project's .venv) runs every stage; paths to the scripts
# are absolute so that `snakemake -d OTHER_DIR` works.
PYTHON = sys.executable
SCRIPTS = str(Path(workflow.basedir) / "workflow" / "scripts")


SOURCE_SUFFIXES = {".py", ".j2", ".c", ".cc", ".h", ".ld"}


def code(*folders):
    """The source files of these repository folders, as inputs: a rule reruns when the code that
    computes its outputs changes (the same folders are the stage's deps in dvc.yaml)."""
    root = Path(workflow.basedir)
    return sorted(
        str(f) for folder in folders for f in (root / folder).rglob("*") if f.suffix in SOURCE_SUFFIXES
    )


# Scripts read the effective parameters (params.yaml merged with --configfile/--config) from this
# file; rules declare the sections they use as `params:` so that changing one reruns only them.
PARAMS_FILE = Path(".snakemake/microai/params.json")
_effective = json.dumps(config, indent=1, sort_keys=True)
if not PARAMS_FILE.exists() or PARAMS_FILE.read_text() != _effective:
    PARAMS_FILE.parent.mkdir(parents=True, exist_ok=True)
    PARAMS_FILE.write_text(_effective)


def _alternatives(names):
    return "|".join(sorted((n.replace(".", r"\.") for n in names), key=len, reverse=True)) or "$^"


wildcard_constraints:
    dataset=_alternatives(SWEEP["datasets"]),
    model=_alternatives(SWEEP["models"]),
    filters=r"\d+",
    run=r"\d+",
    precision=_alternatives(config["precisions"]),
    ptq_precision=_alternatives(PTQ_PRECISIONS),
    qat_precision=_alternatives(QAT_PRECISIONS),
    board=_alternatives(BOARDS),
    tflm_precision=_alternatives(TFLM_PRECISIONS),


# Path patterns (one model = dataset x model x filters x run).
MODEL_DIR = "results/models/{dataset}/{model}-f{filters}/run{run}"
RUN_DIR = "results/runs/{dataset}/{model}-f{filters}/run{run}"
BUILD_DIR = "build/{dataset}/{model}-f{filters}/run{run}/{precision}"
EMULATED_BUILD = BUILD_DIR + "/qemu-m4"
PREPARED = "data/prepared/{dataset}.npz"


def tflm_tree_status():
    """The TFLite Micro tree the rows depend on (params, else MICROAI_TFLM_TREE): a rule parameter,
    so that naming, moving or removing the tree reruns the rules that read it."""
    try:
        return str(find_tree(config))
    except NoTFLMTree as err:
        return f"unavailable: {err}"


# TFLite Micro on boards: only where a tree is named (else the table says "unavailable" and no rule runs).
TFLM_BOARDS = [b for b in SWEEP["boards"] if "tflite-micro" in FRAMEWORKS
               and unavailable_reason("tflite-micro", b, config) is None]
TFLM_BUILD = "build/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{tflm_precision}"
# One library for every Cortex-M4F board (same compiler and flags), from a content-keyed cache.
TFLM_LIBRARY = "build/tflm/cortex-m4f/libtflm.a"
TFLM_LIBRARY_JSON = "build/tflm/cortex-m4f/libtflm.json"  # written beside it by the same rule


def tflm_library_key():
    """Compiler, flags and tree content of the TFLM library: a rule parameter, so that any change
    rebuilds it (the cache folder has the same key)."""
    from microai.deploy.tflm.library import library_key
    from microai.deploy.tflm.tree import named_tree

    return library_key(named_tree(config), config["deploy"]["opt"])


def graph_files(pattern):
    """A graph IR artifact is two files: <stem>.json (structure, formats) and <stem>.npz (weights)."""
    return [pattern + ".json", pattern + ".npz"]


def sweep_targets(pattern, runs=None, **extra):
    return expand(
        pattern,
        dataset=SWEEP["datasets"],
        model=SWEEP["models"],
        filters=SWEEP["filters"],
        run=SWEEP["runs"] if runs is None else runs,
        precision=SWEEP["precisions"],
        **extra,
    )


# Rules that need this machine (network, attached boards, the emulator's TCP port) or are trivial.
localrules:
    download,
    flash,
    measure,
    aggregate,
