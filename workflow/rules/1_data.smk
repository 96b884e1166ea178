# Stage 1 - data: official archive -> paper preprocessing -> z-scored arrays.


rule download:
    input:
        code=code("microai/data"),
    output:
        "data/raw/{dataset}/manifest.json",
    params:
        dataset_cfg=lambda w: config["datasets"][w.dataset],
    log:
        "logs/download/{dataset}.log",
    shell:
        "{PYTHON} {SCRIPTS}/download.py --params {PARAMS_FILE} --dataset {wildcards.dataset}"
        " --raw-dir data/raw/{wildcards.dataset} 2> {log}"


rule prepare:
    input:
        manifest=rules.download.output,
        code=code("microai/data"),
    output:
        PREPARED,
    params:
        dataset_cfg=lambda w: config["datasets"][w.dataset],
    log:
        "logs/prepare/{dataset}.log",
    shell:
        "{PYTHON} {SCRIPTS}/prepare.py --params {PARAMS_FILE} --dataset {wildcards.dataset}"
        " --raw-dir data/raw/{wildcards.dataset} --out {output} 2> {log}"
