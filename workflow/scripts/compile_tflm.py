"""Stage compile_tflm: a .tflite model + the TFLM adapter + library for one board (ROM, RAM, fit check)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--board", required=True)
    p.add_argument("--tflite", type=Path, required=True)
    p.add_argument("--library", type=Path, required=True, help="libtflm.json of the tflm_library stage")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--build", type=Path, required=True,
                   help="build report <folder>/build.json; the folder gets the whole build (firmware.elf)")
    args = p.parse_args()
    if args.build.name != "build.json":
        p.error("--build must be <folder>/build.json")
    params = cli.load(args)
    deploy = params["deploy"]
    stages.compile_tflm_firmware(args.board, args.tflite, args.library, args.data, deploy["vectors"],
                                 deploy["opt"], params, args.build.parent)


if __name__ == "__main__":
    cli.run(main)
