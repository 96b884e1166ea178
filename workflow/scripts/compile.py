"""Stage compile: cross-compile the firmware harness + generated C for one board (ROM, RAM, fit check)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--board", required=True)
    p.add_argument("--c-dir", type=Path, required=True, help="generated C library")
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--vectors", type=int, required=True, help="test vectors embedded in the firmware")
    p.add_argument("--opt", default="-O2")
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args()
    stages.compile_firmware(args.board, args.c_dir, args.graph, args.data, args.vectors, args.opt,
                            args.out_dir)


if __name__ == "__main__":
    cli.run(main)
