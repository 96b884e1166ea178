"""Stage measure: run the firmware, check its outputs against the reference, report time and energy."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--board", required=True)
    p.add_argument("--build", type=Path, required=True, help="build.json of the compile stage")
    p.add_argument("--flash", type=Path, required=True, help="flash.json of the flash stage")
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--emulated-elf", type=Path, default=None,
                   help="qemu-m4 build of the same code (estimates a real board that is not attached)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    params = cli.load(args)
    board_cfg = params.get("boards", {}).get(args.board, {})
    stages.measure(args.board, board_cfg, args.build, args.flash, args.graph, args.data,
                   params["deploy"]["timeout_s"], args.out, emulated_elf=args.emulated_elf)


if __name__ == "__main__":
    cli.run(main)
