# Stage 4 - accuracy of every precision on the test set, with the (integer) reference executor.


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
