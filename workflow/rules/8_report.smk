# Stage 8 - aggregation: every measured number into results/tables.csv and the paper's A3-A5 layout.


def report_inputs(wildcards):
    files = sweep_targets(RUN_DIR + "/{precision}.eval.json")
    files += sweep_targets(RUN_DIR + "/{precision}.check.json", runs=DEPLOY_RUNS)
    files += sweep_targets(RUN_DIR + "/{precision}.{board}.json", runs=DEPLOY_RUNS, board=SWEEP["boards"])
    if "tflite-micro" in FRAMEWORKS:
        files += expand(RUN_DIR + "/tflite-micro/{tflm_precision}.eval.json", dataset=SWEEP["datasets"],
                        model=SWEEP["models"], filters=SWEEP["filters"], run=SWEEP["runs"],
                        tflm_precision=TFLM_PRECISIONS)
        files += expand(RUN_DIR + "/tflite-micro/{tflm_precision}.{board}.json", dataset=SWEEP["datasets"],
                        model=SWEEP["models"], filters=SWEEP["filters"], run=DEPLOY_RUNS,
                        tflm_precision=TFLM_PRECISIONS, board=TFLM_BOARDS)
    return files


rule aggregate:
    input:
        runs=report_inputs,
        code=code("microai/report"),
    output:
        table="results/tables.csv",
        paper="results/paper_tables.csv",
        figure="results/figures/summary.png",
    params:
        sweep=SWEEP,
        tflm_tree=tflm_tree_status(),
    log:
        "logs/aggregate.log",
    shell:
        "{PYTHON} {SCRIPTS}/aggregate.py --params {PARAMS_FILE} --out {output.table}"
        " --out-paper {output.paper} --out-figure {output.figure} {input.runs} 2> {log}"
