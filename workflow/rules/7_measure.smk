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
