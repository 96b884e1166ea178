# MicroAI: the paper's stages, in order, one file each under workflow/rules/.
#   snakemake --cores all results/tables.csv            (params.yaml, the small offline default)
#   snakemake --cores all --configfile config/paper.yaml  (the paper's full sweep)
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/1_data.smk"
include: "workflow/rules/2_train.smk"
include: "workflow/rules/3_quantize.smk"
include: "workflow/rules/4_evaluate.smk"
include: "workflow/rules/5_codegen.smk"
include: "workflow/rules/6_deploy.smk"
include: "workflow/rules/7_measure.smk"
include: "workflow/rules/8_report.smk"


rule all:
    input:
        "results/tables.csv",
        "results/paper_tables.csv",
        "results/figures/summary.png",
