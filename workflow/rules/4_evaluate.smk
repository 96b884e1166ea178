# Stage 4 - accuracy of every precision on the test set, with the (integer) reference executor;
# TFLite models with the TFLite Micro host runtime (PyPI tflite-micro), the reference of TFLM.


rule evaluate:
    input:
        graph=graph_files(MODEL_DIR + "/{precision}"),
        data=PREPARED,
        code=code("microai/quant"),
    output:
        RUN_DIR + "/{precision}.eval.json",
    log:
        "logs/evaluate/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/evaluate.py --graph {input.graph[0]} --data {input.data}"
        " --precision {wildcards.precision} --out {output} 2> {log}"


rule evaluate_tflm:
    input:
        tflite=MODEL_DIR + "/{tflm_precision}.tflite",
        graph=graph_files(MODEL_DIR + "/float32"),
        data=PREPARED,
        code=code("microai/tflite", "microai/quant", "microai/ops", "codegen"),
    output:
        RUN_DIR + "/tflite-micro/{tflm_precision}.eval.json",
    log:
        "logs/evaluate_tflm/{dataset}/{model}-f{filters}/run{run}/{tflm_precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/evaluate_tflm.py --tflite {input.tflite} --graph {input.graph[0]}"
        " --data {input.data} --precision {wildcards.tflm_precision} --out {output} 2> {log}"
