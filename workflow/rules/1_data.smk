# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
# 1. data: official dataset archives -> prepared arrays.


rule download:
    """fetch the dataset's official archives (sha256-checked) or its local copy"""
    input:
        code=stage_code("download"),
    output:
        raw=directory("data/raw/{dataset}"),
    params:
        datasets_dataset=stage_param("datasets.{dataset}"),
    localrule: True
    log:
        "logs/download/{dataset}.log",
    shell:
        "{PYTHON} {SCRIPTS}/download.py --params {PARAMS_FILE}"
        " --dataset {wildcards.dataset}"
        " --raw-dir {output.raw}"
        " 2> {log}"


rule prepare:
    """official format -> the paper's preprocessing -> z-scored arrays"""
    input:
        raw="data/raw/{dataset}",
        code=stage_code("prepare"),
    output:
        prepared="data/prepared/{dataset}.npz",
    params:
        datasets_dataset=stage_param("datasets.{dataset}"),
    resources:
        **job_resources("prepare"),
    log:
        "logs/prepare/{dataset}.log",
    shell:
        "{PYTHON} {SCRIPTS}/prepare.py --params {PARAMS_FILE}"
        " --dataset {wildcards.dataset}"
        " --raw-dir {input.raw}"
        " --out {output.prepared}"
        " 2> {log}"
