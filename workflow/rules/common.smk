# Shared by every rule: parameter validation (before any rule runs), the effective parameters file,
# wildcard constraints, and the helpers the generated rules files (<n>_<family>.smk) call to look up
# their stage's parameters, code and resources in the stage table (microai/pipeline.py).
import hashlib
import json
import os
import sys
from pathlib import Path

from microai import pipeline
from microai.deploy.boards import BOARDS
from microai.config import ConfigError, section, stage_resources, stage_threads, validate_params

try:
    validate_params(config, "configuration (params.yaml / --configfile / --config)")
    pipeline.check_resources(config, "configuration")
except (ConfigError, ValueError) as err:
    raise WorkflowError(str(err)) from None

SWEEP = config["sweep"]
# The interpreter running Snakemake (the project's .venv) runs every stage; the scripts' paths are
# absolute so that `snakemake -d OTHER_DIR` works.
PYTHON = sys.executable
SCRIPTS = str(Path(workflow.basedir) / "workflow" / "scripts")


def effective_params_file(cfg):
    """Scripts read the effective parameters (params.yaml merged with --configfile/--config) from a
    file named by its content, written once and atomically: a later `snakemake -n` with other
    parameters never rewrites the file that running jobs read. Rules declare the sections they use
    as `params:`, so changing one reruns only the stages that read it."""
    text = json.dumps(cfg, indent=1, sort_keys=True)
    path = Path(".snakemake/microai") / f"params-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return str(path)


PARAMS_FILE = effective_params_file(config)


def check_datasets_obtainable():
    """Stop before any job (the dry run too) naming every swept dataset that cannot be downloaded
    from here and is not downloaded yet."""
    pending = [d for d in SWEEP["datasets"] if not Path(f"data/raw/{d}/manifest.json").exists()]
    if not pending:
        return
    from microai.data import why_unobtainable

    reasons = {d: why_unobtainable(d, config["datasets"].get(d) or {}) for d in pending}
    problems = [f"  {d}: {why}" for d, why in reasons.items() if why]
    if problems:
        raise WorkflowError("cannot obtain these datasets of the sweep:\n" + "\n".join(problems))


check_datasets_obtainable()


def _alternatives(names):
    return "|".join(sorted((n.replace(".", r"\.") for n in names), key=len, reverse=True)) or "$^"


def stage_param(dotted):
    """A rule parameter: the params.yaml value at a dotted key that may use wildcards
    (``train.{dataset}``); None where an optional key (trailing '?') is absent. Changing the value
    reruns the jobs that read it, and only those."""

    def value(wildcards):
        key = dotted.format(**wildcards)
        try:
            return section(config, *key.rstrip("?").split("."))
        except ConfigError:
            if key.endswith("?"):
                return None
            raise

    return value


def environment_fact(name):
    """A fact of this machine a stage depends on (e.g. which TFLite Micro tree), as a rule parameter."""
    return pipeline.ENVIRONMENT_FACTS[name](config)


def stage_code(name):
    """The stage's code files (script, stage module, library folders): an edit reruns the stage."""
    return pipeline.STAGE_BY_NAME[name].code_files(Path(workflow.basedir))


def job_resources(name):
    """Cluster resources of a job from the configuration's `resources` (sized for its sweep), so that
    `--set-resources` overrides one of them and keeps the others."""
    own = stage_resources(config, name)
    out = {k: own[k] for k in ("mem_mb", "runtime") if k in own}
    res = config.get("resources", {})
    return {**out, **{k: res[k] for k in ("slurm_partition", "slurm_account") if res.get(k)}}


def caption(name):
    return str(Path(workflow.basedir) / "workflow" / "report" / f"{name}.rst")
