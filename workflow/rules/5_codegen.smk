# Stage 5 - C code generation from the graph IR, and the bit-exact host check on the whole test set.


rule generate_c:
    input:
        graph=graph_files(MODEL_DIR + "/{precision}"),
        code=code("codegen"),
    output:
        directory(BUILD_DIR + "/c"),
    log:
        "logs/generate_c/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} -m codegen {input.graph[0]} -o {output} 2> {log}"


rule check_host:
    input:
        graph=graph_files(MODEL_DIR + "/{precision}"),
        c=BUILD_DIR + "/c",
        data=PREPARED,
        code=code("codegen"),
    output:
        RUN_DIR + "/{precision}.check.json",
    log:
        "logs/check_host/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/check_host.py --graph {input.graph[0]} --c-dir {input.c}"
        " --data {input.data} --out {output} 2> {log}"
