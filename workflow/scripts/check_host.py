"""Stage check_host: build the generated C natively; compare with the reference on the whole test set."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--c-dir", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stages.check_host(args.graph, args.c_dir, args.data, args.out)


if __name__ == "__main__":
    cli.run(main)
