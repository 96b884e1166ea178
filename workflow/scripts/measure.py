"""Stage measure: run the firmware, check its outputs against the reference, report time and energy."""


from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.measure_args(p, "graph", "compile", "flash")
    args = p.parse_args()
    params = cli.load(args)
    board_cfg = params.get("boards", {}).get(args.board, {})
    stages.measure(args.board, board_cfg, args.build, args.flash, args.graph, args.data,
                   params["deploy"]["timeout_s"], args.out, emulated_elf=args.emulated_elf)


if __name__ == "__main__":
    cli.run(main)
