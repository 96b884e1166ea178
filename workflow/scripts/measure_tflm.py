"""Stage measure_tflm: run a TFLM image, compare its outputs bit for bit with the TFLM host runtime's,
report cycles (per operator), time, energy, ROM and RAM."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--board", required=True)
    p.add_argument("--build", type=Path, required=True, help="build.json of the compile_tflm stage")
    p.add_argument("--flash", type=Path, required=True, help="flash.json of the flash_tflm stage")
    p.add_argument("--tflite", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--emulated-elf", type=Path, default=None,
                   help="qemu-m4 build of the same model (estimates a real board that is not attached)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    params = cli.load(args)
    board_cfg = params.get("boards", {}).get(args.board, {})
    stages.measure_tflm(args.board, board_cfg, args.build, args.flash, args.tflite, args.data,
                        params["deploy"]["timeout_s"], args.out, emulated_elf=args.emulated_elf)


if __name__ == "__main__":
    cli.run(main)
