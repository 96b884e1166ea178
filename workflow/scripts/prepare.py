"""Stage prepare: official format -> the paper's preprocessing -> z-scored .npz."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--raw-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stages.prepare(args.dataset, cli.load(args), args.raw_dir, args.out)


if __name__ == "__main__":
    cli.run(main)
