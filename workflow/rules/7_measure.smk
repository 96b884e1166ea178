# Stage 7 - measurement: run on the board (emulated or real), check outputs bit for bit against the
# reference executor, cycles/instructions, estimated cycles (Cortex-M4 model), time and energy at 48 MHz.


rule measure:
    input:
        build=BUILD_DIR + "/{board}/build.json",
        flash=BUILD_DIR + "/{board}/flash.json",
        graph=graph_files(MODEL_DIR + "/{precision}"),
        data=PREPARED,
        emulated_elf=EMULATED_BUILD + "/firmware.elf",
        code=code("microai/deploy"),
    output:
        RUN_DIR + "/{precision}.{board}.json",
    params:
        board_cfg=lambda w: config.get("boards", {}).get(w.board, {}),
        timeout=config["deploy"]["timeout_s"],
    log:
        "logs/measure/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/measure.py --params {PARAMS_FILE} --board {wildcards.board}"
        " --build {input.build} --flash {input.flash} --graph {input.graph[0]} --data {input.data}"
        " --timeout {params.timeout} --emulated-elf {input.emulated_elf} --out {output} 2> {log}"


# TFLite Micro: outputs compared bit for bit with the TFLM host runtime's, cycles per operator.
if TFLM_BOARDS:

    rule measure_tflm:
        input:
            build=TFLM_BUILD + "/{board}/build.json",
            flash=TFLM_BUILD + "/{board}/flash.json",
            tflite=MODEL_DIR + "/{tflm_precision}.tflite",
            data=PREPARED,
            emulated=TFLM_BUILD + "/qemu-m4/build.json",
            code=code("microai/deploy", "microai/tflite"),
        output:
            RUN_DIR + "/tflite-micro/{tflm_precision}.{board}.json",
        params:
            board_cfg=lambda w: config.get("boards", {}).get(w.board, {}),
            timeout=config["deploy"]["timeout_s"],
        log:
            "logs/measure_tflm/{dataset}/{model}-f{filters}/run{run}/{tflm_precision}/{board}.log",
        shell:
            "{PYTHON} {SCRIPTS}/measure_tflm.py --params {PARAMS_FILE} --board {wildcards.board}"
            " --build {input.build} --flash {input.flash} --tflite {input.tflite} --data {input.data}"
            " --timeout {params.timeout} --emulated-elf $(dirname {input.emulated})/firmware.elf"
            " --out {output} 2> {log}"

    localrules:
        flash_tflm,
        measure_tflm,
