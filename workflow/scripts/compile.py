"""Stage compile: cross-compile the firmware harness + generated C for one board (ROM, RAM, fit check)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--board", required=True)
    p.add_argument("--c-dir", type=Path, required=True, help="generated C library")
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--elf", type=Path, required=True, help="firmware ELF; its folder gets the whole build")
    p.add_argument("--build", type=Path, required=True, help="build report (JSON), beside the ELF")
    args = p.parse_args()
    if args.elf.name != "firmware.elf" or args.build != args.elf.parent / "build.json":
        p.error("--elf must be <folder>/firmware.elf and --build <folder>/build.json")
    deploy = cli.load(args)["deploy"]
    stages.compile_firmware(args.board, args.c_dir, args.graph, args.data, deploy["vectors"], deploy["opt"],
                            args.elf.parent)


if __name__ == "__main__":
    cli.run(main)
