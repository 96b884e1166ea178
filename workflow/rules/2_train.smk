# Stage 2 - float training (SGD + momentum, multi-step schedule, mixup); the run index is the seed.


rule train_float:
    input:
        data=PREPARED,
        code=code("microai/models", "microai/train"),
    output:
        checkpoint=MODEL_DIR + "/float32.pt",
        metrics=MODEL_DIR + "/float32.train.json",
    params:
        schedule=lambda w: config["train"][w.dataset],
        model_options=lambda w: config.get("models", {}).get(w.model, {}),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=600,
    log:
        "logs/train_float/{dataset}/{model}-f{filters}/run{run}.log",
    shell:
        "{PYTHON} {SCRIPTS}/train_float.py --params {PARAMS_FILE} --data {input.data} --model {wildcards.model}"
        " --filters {wildcards.filters} --run {wildcards.run} --threads {threads}"
        " --out {output.checkpoint} --metrics {output.metrics} 2> {log}"
