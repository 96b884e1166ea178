# MicroAI: the paper's stages, one rule per entry of the stage table (microai/pipeline.py).
#   snakemake --cores all results/tables.csv            (params.yaml, the small offline default)
#   snakemake --cores all --configfile config/paper.yaml  (the paper's full sweep)
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The repository's params.yaml, also with `-d OTHER_DIR`; --configfile extends it (a mapping is
# merged key by key, a list replaced), so a profile names every list it sweeps.
configfile: str(Path(workflow.basedir) / "params.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/stages.smk"


rule all:
    input:
        rules.aggregate.output,
    default_target: True
