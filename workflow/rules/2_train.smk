# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
# 2. train: float training of each model, filter count and run.


rule train_float:
    """float training (SGD + momentum, multi-step schedule, mixup); the run index is the seed"""
    input:
        data="data/prepared/{dataset}.npz",
        code=stage_code("train_float"),
    output:
        checkpoint="results/models/{dataset}/{model}-f{filters}/run{run}/float32.pt",
        history="results/models/{dataset}/{model}-f{filters}/run{run}/float32.train.json",
    params:
        train_dataset=stage_param("train.{dataset}"),
        models_model=stage_param("models.{model}"),
    threads: stage_threads(config, "train_float")
    resources:
        **job_resources("train_float"),
    log:
        "logs/train_float/{dataset}/{model}-f{filters}/run{run}.log",
    shell:
        "{PYTHON} {SCRIPTS}/train_float.py --params {PARAMS_FILE}"
        " --data {input.data}"
        " --model {wildcards.model}"
        " --filters {wildcards.filters}"
        " --run {wildcards.run}"
        " --out {output.checkpoint}"
        " --metrics {output.history}"
        " --threads {threads}"
        " 2> {log}"
