# MicroAI: the paper's stages in order, one rules file per family (workflow/rules/<n>_<family>.smk),
# each rule an entry of the stage table (microai/pipeline.py) that dvc.yaml is made from too.
#   snakemake --cores all results/tables.csv            (params.yaml, the small offline default)
#   snakemake --cores all --configfile config/paper.yaml  (the paper's full sweep)
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The working directory's params.yaml, or the repository's where it has none (`-d OTHER_DIR`);
# --configfile extends it (a mapping is merged key by key, a list replaced), so a profile names
# every list it sweeps.
configfile: "params.yaml" if Path("params.yaml").is_file() else str(Path(workflow.basedir) / "params.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
# Wildcards take only the values swept (a board name never matches a precision).
wildcard_constraints:
    dataset=_alternatives(SWEEP["datasets"]),
    model=_alternatives(SWEEP["models"]),
    filters=r"\d+",
    run=r"\d+",
    precision=_alternatives(config["precisions"]),
    board=_alternatives(BOARDS),


include: "workflow/rules/1_data.smk"
include: "workflow/rules/2_train.smk"
include: "workflow/rules/3_quantize.smk"
include: "workflow/rules/4_deploy.smk"
include: "workflow/rules/5_measure.smk"
include: "workflow/rules/6_report.smk"


rule all:
    input:
        rules.aggregate.output,
    default_target: True
