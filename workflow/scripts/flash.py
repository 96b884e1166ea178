"""Stage flash: program a real board with pyocd (the emulator loads the ELF itself at run time)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--board", required=True)
    p.add_argument("--elf", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stages.flash(args.board, cli.load(args).get("boards", {}).get(args.board, {}), args.elf, args.out)


if __name__ == "__main__":
    cli.run(main)
