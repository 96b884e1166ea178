# Stage 7 - measurement: run on the board (emulated or real), check outputs bit for bit against the
# reference executor, cycles/instructions, estimated cycles (Cortex-M4 model), time and energy at 48 MHz.


def qemu_estimate(wildcards):
    """A real board that is not attached borrows the cycle estimate of the qemu-m4 build of the same code."""
    if wildcards.board in ("qemu-m4", "host") or "qemu-m4" not in SWEEP["boards"]:
        return []
    return RUN_DIR.format(**wildcards) + f"/{wildcards.precision}.qemu-m4.json"


rule measure:
    input:
        build=BUILD_DIR + "/{board}/build.json",
        flash=BUILD_DIR + "/{board}/flash.json",
        graph=graph_files(MODEL_DIR + "/{precision}"),
        data=PREPARED,
        estimate=qemu_estimate,
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
        " --timeout {params.timeout} --out {output}"
        " $([ -n '{input.estimate}' ] && echo --estimate {input.estimate}) 2> {log}"
