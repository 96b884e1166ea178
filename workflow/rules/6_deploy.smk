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
