# Generated from the stage table (microai/pipeline.py) by `make workflow-files`: edit the table, not here.
# 4. deploy: C code generated and checked on the host, firmware built and flashed per board, for
# MicroAI and TFLite Micro.


rule generate_c:
    """C library from the graph IR (codegen)"""
    input:
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.npz",
        code=stage_code("generate_c"),
    output:
        c=directory("build/{dataset}/{model}-f{filters}/run{run}/{precision}/c"),
    localrule: True
    log:
        "logs/generate_c/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} -m codegen"
        " {input.graph} -o {output.c}"
        " 2> {log}"


rule check_host:
    """generated C built natively, compared with the reference executor on the whole test set"""
    input:
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.npz",
        c="build/{dataset}/{model}-f{filters}/run{run}/{precision}/c",
        data="data/prepared/{dataset}.npz",
        code=stage_code("check_host"),
    output:
        result="results/runs/{dataset}/{model}-f{filters}/run{run}/{precision}.check.json",
    resources:
        **job_resources("check_host"),
    log:
        "logs/check_host/{dataset}/{model}-f{filters}/run{run}/{precision}.log",
    shell:
        "{PYTHON} {SCRIPTS}/check_host.py"
        " --graph {input.graph}"
        " --c-dir {input.c}"
        " --data {input.data}"
        " --out {output.result}"
        " 2> {log}"


rule compile:
    """firmware harness + generated C cross-compiled per board (ROM, RAM, does it fit)"""
    input:
        c="build/{dataset}/{model}-f{filters}/run{run}/{precision}/c",
        graph="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.json",
        weights="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.npz",
        data="data/prepared/{dataset}.npz",
        code=stage_code("compile"),
    output:
        elf="build/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}/firmware.elf",
        build="build/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}/build.json",
    params:
        deploy_vectors=stage_param("deploy.vectors"),
        deploy_opt=stage_param("deploy.opt"),
    localrule: True
    log:
        "logs/compile/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/compile.py --params {PARAMS_FILE}"
        " --board {wildcards.board}"
        " --c-dir {input.c}"
        " --graph {input.graph}"
        " --data {input.data}"
        " --elf {output.elf}"
        " --build {output.build}"
        " 2> {log}"


rule flash:
    """program an attached board (pyocd); the emulator and the host load the ELF at run time"""
    input:
        elf="build/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}/firmware.elf",
        code=stage_code("flash"),
    output:
        status="build/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}/flash.json",
    params:
        boards_board=stage_param("boards.{board}?"),
    localrule: True
    log:
        "logs/flash/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/flash.py --params {PARAMS_FILE}"
        " --board {wildcards.board}"
        " --elf {input.elf}"
        " --out {output.status}"
        " 2> {log}"


rule tflm_library:
    """TFLM + CMSIS-NN of the named tree as a static library for the Cortex-M4F boards (cached)"""
    input:
        code=stage_code("tflm_library"),
    output:
        manifest="build/tflm/cortex-m4f/libtflm.json",
    params:
        frameworks_tflite_micro_source=stage_param("frameworks.tflite-micro.source"),
        deploy_opt=stage_param("deploy.opt"),
        tflm_tree=environment_fact("tflm_tree"),
        tflm_library_key=environment_fact("tflm_library_key"),
    threads: stage_threads(config, "tflm_library")
    resources:
        **job_resources("tflm_library"),
    log:
        "logs/tflm_library.log",
    shell:
        "{PYTHON} {SCRIPTS}/tflm_library.py --params {PARAMS_FILE}"
        " --out build/tflm/cortex-m4f/libtflm.a"
        " --threads {threads}"
        " 2> {log}"


rule compile_tflm:
    """a .tflite model + the TFLM adapter + library per board (ROM, RAM; a model that does not fit gives a build.json saying so)"""
    input:
        tflite="results/models/{dataset}/{model}-f{filters}/run{run}/{precision}.tflite",
        library="build/tflm/cortex-m4f/libtflm.json",
        data="data/prepared/{dataset}.npz",
        code=stage_code("compile_tflm"),
    output:
        build="build/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}/{board}/build.json",
    params:
        frameworks_tflite_micro_source=stage_param("frameworks.tflite-micro.source"),
        deploy_vectors=stage_param("deploy.vectors"),
        deploy_opt=stage_param("deploy.opt"),
        tflm_tree=environment_fact("tflm_tree"),
    localrule: True
    log:
        "logs/compile_tflm/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/compile_tflm.py --params {PARAMS_FILE}"
        " --board {wildcards.board}"
        " --tflite {input.tflite}"
        " --library {input.library}"
        " --data {input.data}"
        " --build {output.build}"
        " 2> {log}"


rule flash_tflm:
    """program an attached board with the TFLM image (as flash)"""
    input:
        build="build/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}/{board}/build.json",
        code=stage_code("flash_tflm"),
    output:
        status="build/{dataset}/{model}-f{filters}/run{run}/tflite-micro/{precision}/{board}/flash.json",
    params:
        boards_board=stage_param("boards.{board}?"),
    localrule: True
    log:
        "logs/flash_tflm/{dataset}/{model}-f{filters}/run{run}/{precision}/{board}.log",
    shell:
        "{PYTHON} {SCRIPTS}/flash.py --params {PARAMS_FILE}"
        " --board {wildcards.board}"
        " --elf build/{wildcards.dataset}/{wildcards.model}-f{wildcards.filters}/run{wildcards.run}/tflite-micro/{wildcards.precision}/{wildcards.board}/firmware.elf"
        " --out {output.status}"
        " 2> {log}"
