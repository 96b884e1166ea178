# Stage 3 - quantization: float graph IR, int PTQ (e.g. the paper's int16 Q7.9), int8 QAT; and the
# TFLite models of the float graph (float32, int8 by TFLite's post-training quantization).


rule import_graph:
    input:
        checkpoint=MODEL_DIR + "/float32.pt",
        data=PREPARED,
        code=code("microai/graph", "microai/models"),
    output:
        graph_files(MODEL_DIR + "/float32"),
    log:
        "logs/import_graph/{dataset}/{model}-f{filters}/run{run}.log",
    shell:
        "{PYTHON} {SCRIPTS}/import_graph.py --checkpoint {input.checkpoint} --data {input.data}"
        " --out {output[0]} 2> {log}"


rule quantize_ptq:
    input:
        graph=graph_files(MODEL_DIR + "/float32"),
        data=PREPARED,
        code=code("microai/graph", "microai/quant"),
    output:
        graph_files(MODEL_DIR + "/{ptq_precision}"),
    params:
        precision=lambda w: config["precisions"][w.ptq_precision],
    log:
        "logs/quantize_ptq/{dataset}/{model}-f{filters}/run{run}/{ptq_precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/quantize_ptq.py --params {PARAMS_FILE} --graph {input.graph[0]}"
        " --data {input.data} --precision {wildcards.ptq_precision} --out {output[0]} 2> {log}"


rule quantize_qat:
    input:
        checkpoint=MODEL_DIR + "/float32.pt",
        data=PREPARED,
        code=code("microai/graph", "microai/quant", "microai/models", "microai/train"),
    output:
        graph=graph_files(MODEL_DIR + "/{qat_precision}"),
        metrics=MODEL_DIR + "/{qat_precision}.qat.json",
    params:
        schedule=lambda w: config["qat"][w.dataset],
        precision=lambda w: config["precisions"][w.qat_precision],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=600,
    log:
        "logs/quantize_qat/{dataset}/{model}-f{filters}/run{run}/{qat_precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/quantize_qat.py --params {PARAMS_FILE} --checkpoint {input.checkpoint}"
        " --data {input.data} --run {wildcards.run} --precision {wildcards.qat_precision}"
        " --threads {threads} --out {output.graph[0]} --metrics {output.metrics} 2> {log}"


rule convert_tflite:
    input:
        graph=graph_files(MODEL_DIR + "/float32"),
        data=PREPARED,
        code=code("microai/graph", "microai/tflite"),
    output:
        float32=MODEL_DIR + "/float32.tflite",
        int8=MODEL_DIR + "/int8.tflite",
    params:
        tflm=lambda w: config["frameworks"]["tflite-micro"]["representative_samples"],
    threads: 1
    resources:
        mem_mb=3000,
    log:
        "logs/convert_tflite/{dataset}/{model}-f{filters}/run{run}.log",
    shell:
        "{PYTHON} {SCRIPTS}/convert_tflite.py --params {PARAMS_FILE} --graph {input.graph[0]}"
        " --data {input.data} --threads {threads} --out-float {output.float32} --out-int8 {output.int8}"
        " 2> {log}"
