"""Stage compile_tflm: a .tflite model + the TFLM adapter + library for one board (ROM, RAM, fit check)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--board", required=True)
    p.add_argument("--tflite", type=Path, required=True)
    p.add_argument("--library", type=Path, required=True, help="library.json of the tflm_library stage")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--vectors", type=int, required=True, help="test vectors embedded in the firmware")
    p.add_argument("--opt", default="-O2")
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args()
    stages.compile_tflm_firmware(args.board, args.tflite, args.library, args.data, args.vectors, args.opt,
                                 cli.load(args), args.out_dir)


if __name__ == "__main__":
    cli.run(main)
