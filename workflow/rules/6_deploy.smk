# Stage 6 - deployment: cross-compile harness + generated C per board (ROM/RAM, "does not fit"), flash.


rule compile:
    input:
        c=BUILD_DIR + "/c",
        graph=graph_files(MODEL_DIR + "/{precision}"),
        data=PREPARED,
        code=code("microai/deploy", "firmware"),
    output:
        elf=BUILD_DIR + "/{board}/firmware.elf",
        build=BUILD_DIR + "/{board}/build.json",
    params:
        opt=config["deploy"]["opt"],
        vectors=config["deploy"]["vectors"],
    log:
        "logs/compile/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/compile.py --board {wildcards.board} --c-dir {input.c}"
        " --graph {input.graph[0]} --data {input.data} --vectors {params.vectors} --opt={params.opt}"
        " --out-dir $(dirname {output.elf}) 2> {log}"


rule flash:
    input:
        elf=BUILD_DIR + "/{board}/firmware.elf",
    output:
        BUILD_DIR + "/{board}/flash.json",
    params:
        board_cfg=lambda w: config.get("boards", {}).get(w.board, {}),
    log:
        "logs/flash/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/flash.py --params {PARAMS_FILE} --board {wildcards.board}"
        " --elf {input.elf} --out {output} 2> {log}"


# TFLite Micro: the .tflite models (rule convert_tflite) with the TFLM adapter and library, same harness.
if TFLM_BOARDS:

    rule tflm_library:
        input:
            code=code("microai/deploy/tflm"),
        output:
            library=TFLM_LIBRARY,
            manifest=TFLM_LIBRARY_JSON,
        params:
            opt=config["deploy"]["opt"],
            tree=tflm_tree_status(),
            key=tflm_library_key(),
        threads: workflow.cores
        log:
            "logs/tflm_library.log",
        shell:
            "{PYTHON} {SCRIPTS}/tflm_library.py --params {PARAMS_FILE} --opt={params.opt} --threads {threads}"
            " --out {output.library} 2> {log}"

    rule compile_tflm:
        input:
            tflite=MODEL_DIR + "/{tflm_precision}.tflite",
            library=rules.tflm_library.output.manifest,
            data=PREPARED,
            code=code("microai/deploy", "microai/tflite", "firmware"),
        # build.json only: a model that does not fit the board has no firmware.elf, and says why there.
        output:
            build=TFLM_BUILD + "/{board}/build.json",
        params:
            opt=config["deploy"]["opt"],
            vectors=config["deploy"]["vectors"],
            tree=tflm_tree_status(),
        log:
            "logs/compile_tflm/{dataset}/{model}-f{filters}/run{run}/{tflm_precision}/{board}.log",
        shell:
            "{PYTHON} {SCRIPTS}/compile_tflm.py --params {PARAMS_FILE} --board {wildcards.board}"
            " --tflite {input.tflite} --library {input.library} --data {input.data}"
            " --vectors {params.vectors} --opt={params.opt} --out-dir $(dirname {output.build}) 2> {log}"

    rule flash_tflm:
        input:
            build=TFLM_BUILD + "/{board}/build.json",
        output:
            TFLM_BUILD + "/{board}/flash.json",
        params:
            board_cfg=lambda w: config.get("boards", {}).get(w.board, {}),
        log:
            "logs/flash_tflm/{dataset}/{model}-f{filters}/run{run}/{tflm_precision}/{board}.log",
        shell:
            "{PYTHON} {SCRIPTS}/flash.py --params {PARAMS_FILE} --board {wildcards.board}"
            " --elf $(dirname {input.build})/firmware.elf --out {output} 2> {log}"
