# MicroAI: the paper's stages, one rule per entry of the stage table (microai/pipeline.py).
#   snakemake --cores all results/tables.csv            (params.yaml, the small offline default)
#   snakemake --cores all --configfile config/paper.yaml  (the paper's full sweep)
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The repository's params.yaml, also with `-d OTHER_DIR`; --configfile replaces it.
configfile: str(Path(workflow.basedir) / "params.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    input:
        rules.aggregate.output,
    default_target: True
