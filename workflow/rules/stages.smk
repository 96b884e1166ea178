# One rule per entry of the stage table (microai/pipeline.py), the same entries dvc.yaml is made from.
import re

from microai.config import section


def lookup(cfg, dotted):
    """params.yaml value at a dotted key; None where an optional key (trailing '?') is absent."""
    try:
        return section(cfg, *dotted.rstrip("?").split("."))
    except ConfigError:
        if dotted.endswith("?"):
            return None
        raise


def stage_inputs(stage):
    inputs = {}
    for name, pattern in stage.inputs.items():
        every_result = pattern == pipeline.SWEEP_RESULTS
        inputs[name] = (lambda w: pipeline.sweep_results(config)) if every_result else pattern
    return {**inputs, "code": stage.code_files(Path(workflow.basedir))}


def stage_outputs(stage):
    outputs = {}
    for name, out in stage.outputs.items():
        path = directory(out.path) if out.kind == "dir" else out.path
        if out.report:
            caption = Path(workflow.basedir) / "workflow" / "report" / f"{out.report}.rst"
            category = "Tables" if out.path.endswith(".csv") else "Figures"
            subcategory = "Accuracy" if "accuracy" in out.report else "Deployment"
            path = report(path, caption=str(caption), category=category,
                          subcategory=None if category == "Tables" else subcategory)
        outputs[name] = path
    return outputs


def stage_params(stage):
    """Every parameter a stage reads, so that changing it reruns the stage (and only what reads it),
    and the facts of this machine it depends on."""
    params = {re.sub(r"\W+", "_", key).strip("_"): (lambda w, key=key: lookup(config, key.format(**w)))
              for key in stage.params}
    return {**params, **{fact: pipeline.ENVIRONMENT_FACTS[fact](config) for fact in stage.facts}}


def job_resources(stage):
    """Cluster resources of a job from the configuration's `resources` (sized for its sweep), so that
    `--set-resources` overrides one of them and keeps the others; quick local stages take
    Snakemake's defaults."""
    if stage.local:
        return {}
    own = stage_resources(config, stage.name)
    out = {k: own[k] for k in ("mem_mb", "runtime") if k in own}
    res = config.get("resources", {})
    return {**out, **{k: res[k] for k in ("slurm_partition", "slurm_account") if res.get(k)}}


def job_threads(stage):
    return stage_resources(config, stage.name).get("threads", 1) if stage.threaded else 1


def stage_shell(name):
    stage = pipeline.STAGE_BY_NAME[name]
    script = f"{{SCRIPTS}}/{stage.script}" if stage.module else stage.script
    program = f"{{PYTHON}} {script}"
    args = pipeline.fill_dimensions(stage.args, r"{wildcards.\1}")
    return " ".join([program, "--params {PARAMS_FILE}" if stage.params else "", args,
                     "--threads {threads}" if stage.threaded else "", "2> {log}"])


for _stage in pipeline.STAGES:

    rule:
        name:
            _stage.name
        input:
            **stage_inputs(_stage),
        output:
            **stage_outputs(_stage),
        params:
            **stage_params(_stage),
        threads: job_threads(_stage)
        resources:
            **job_resources(_stage),
        log:
            _stage.log(),
        localrule: _stage.local
        # The command is evaluated when the rule is defined and again when a job runs; by then the
        # loop variable holds the last stage, but `rule` (a local of the job) names the right one.
        shell:
            stage_shell(locals().get("rule", _stage.name))
