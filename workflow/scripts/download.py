"""Stage download: fetch a dataset's official archives (URL + sha256, or a local mirror)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--dataset", required=True)
    p.add_argument("--raw-dir", type=Path, required=True)
    args = p.parse_args()
    stages.download(args.dataset, cli.load(args), args.raw_dir)


if __name__ == "__main__":
    cli.run(main)
