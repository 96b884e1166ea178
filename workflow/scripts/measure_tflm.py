"""Stage measure_tflm: run a TFLM image, compare its outputs bit for bit with the TFLM host runtime's,
report cycles (per operator), time, energy, ROM and RAM."""


from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.measure_args(p, "tflite", "compile_tflm", "flash_tflm")
    args = p.parse_args()
    params = cli.load(args)
    board_cfg = params.get("boards", {}).get(args.board, {})
    stages.measure_tflm(args.board, board_cfg, args.build, args.flash, args.tflite, args.data,
                        params["deploy"]["timeout_s"], args.out, emulated_elf=args.emulated_elf)


if __name__ == "__main__":
    cli.run(main)
