# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
# 3. quantize: each precision's graph IR (PTQ or QAT) and its test accuracy; TFLite's own conversion
# and the TFLite Micro host runtime's accuracy.


rule quantize:
    """graph IR of the trained model in one precision: float32 as trained, PTQ formats, or QAT"""
    input:
        checkpoint="results/models/{dataset}/{model}-f{filters}/run{run}/float32.pt",
        data="data/prepared/{dataset}.npz",
        code=stage_code("quantize"),
    output:
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.npz",
        history="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.quant.json",
    params:
        precisions_precision=stage_param("precisions.{precision}"),
        qat_dataset=stage_param("qat.{dataset}?"),
    threads: stage_threads(config, "quantize")
    resources:
        **job_resources("quantize"),
    log:
        "logs/quantize/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/quantize.py --params {PARAMS_FILE}"
        " --checkpoint {input.checkpoint}"
        " --data {input.data}"
        " --run {wildcards.run}"
        " --precision {wildcards.precision}"
        " --out {output.graph}"
        " --metrics {output.history}"
        " --threads {threads}"
        " 2> {log}"


rule evaluate:
    """test accuracy with the reference executor (exact integer arithmetic for quantized graphs)"""
    input:
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.npz",
        data="data/prepared/{dataset}.npz",
        code=stage_code("evaluate"),
    output:
        result="results/runs/{dataset}/{model}-f{filters}/run{run}/{precision}.eval.json",
    resources:
        **job_resources("evaluate"),
    log:
        "logs/evaluate/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/evaluate.py"
        " --graph {input.graph}"
        " --data {input.data}"
        " --precision {wildcards.precision}"
        " --out {output.result}"
        " 2> {log}"


rule convert_tflite:
    """float graph IR -> Keras -> float32 and int8 (TFLite post-training quantization) .tflite"""
    input:
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/float32.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/float32.npz",
        data="data/prepared/{dataset}.npz",
        code=stage_code("convert_tflite"),
    output:
        float32="results/models/{dataset}/{model}-f{filters}/run{run}/float32.tflite",
        int8="results/models/{dataset}/{model}-f{filters}/run{run}/int8.tflite",
    params:
        frameworks_tflite_micro_representative_samples=stage_param("frameworks.tflite-micro.representative_samples"),
    threads: stage_threads(config, "convert_tflite")
    resources:
        **job_resources("convert_tflite"),
    log:
        "logs/convert_tflite/{dataset}/{model}-f{filters}/run{run}.log",
    shell:
        "{PYTHON} {SCRIPTS}/convert_tflite.py --params {PARAMS_FILE}"
        " --graph {input.graph}"
        " --data {input.data}"
        " --out-float {output.float32}"
        " --out-int8 {output.int8}"
        " --threads {threads}"
        " 2> {log}"


rule evaluate_tflm:
    """accuracy and arena of a .tflite model in the TFLite Micro host runtime"""
    input:
        tflite="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.tflite",
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/float32.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/float32.npz",
        data="data/prepared/{dataset}.npz",
        code=stage_code("evaluate_tflm"),
    output:
        result="results/runs/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}.eval.json",
    resources:
        **job_resources("evaluate_tflm"),
    log:
        "logs/evaluate_tflm/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/evaluate_tflm.py"
        " --tflite {input.tflite}"
        " --graph {input.graph}"
        " --data {input.data}"
        " --precision {wildcards.precision}"
        " --out {output.result}"
        " 2> {log}"
