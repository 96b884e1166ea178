# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
# 5. measure: inference on the board (emulated or real): outputs checked, cycles, time, energy.


rule measure:
    """run on the board (emulated or real), outputs checked against the reference executor, cycles, estimated time and energy at 48 MHz"""
    input:
        build="build/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}/build.json",
        elf="build/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}/firmware.elf",
        flash="build/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}/flash.json",
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.npz",
        data="data/prepared/{dataset}.npz",
        emulated_elf="build/{dataset}/{model}-f{filters}/run{run}/{precision}/qemu-m4/firmware.elf",
        code=stage_code("measure"),
    output:
        result="results/runs/{dataset}/{model}-f{filters}/run{run}/{precision}.{board}.json",
    params:
        boards_board=stage_param("boards.{board}?"),
        deploy_timeout_s=stage_param("deploy.timeout_s"),
    localrule: True
    log:
        "logs/measure/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/measure.py --params {PARAMS_FILE}"
        " --board {wildcards.board}"
        " --build {input.build}"
        " --flash {input.flash}"
        " --graph {input.graph}"
        " --data {input.data}"
        " --emulated-elf {input.emulated_elf}"
        " --out {output.result}"
        " 2> {log}"


rule measure_tflm:
    """run the TFLM image, outputs bit for bit against the TFLM host runtime, cycles per operator"""
    input:
        build="build/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}/{board}/build.json",
        flash="build/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}/{board}/flash.json",
        tflite="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.tflite",
        data="data/prepared/{dataset}.npz",
        emulated="build/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}/qemu-m4/build.json",
        code=stage_code("measure_tflm"),
    output:
        result="results/runs/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}.{board}.json",
    params:
        boards_board=stage_param("boards.{board}?"),
        deploy_timeout_s=stage_param("deploy.timeout_s"),
    localrule: True
    log:
        "logs/measure_tflm/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/measure_tflm.py --params {PARAMS_FILE}"
        " --board {wildcards.board}"
        " --build {input.build}"
        " --flash {input.flash}"
        " --tflite {input.tflite}"
        " --data {input.data}"
        " --emulated-elf build/{wildcards.dataset}/{wildcards.model}-f{wildcards.filters}/run{wildcards.run}/tflite-micro/{wildcards.precision}/qemu-m4/firmware.elf"
        " --out {output.result}"
        " 2> {log}"
