"""Stage aggregate: per-run JSON results -> results/tables.csv, the paper's Tables A3-A5, a figure."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("results", type=Path, nargs="+",
                   help="per-run JSON results, or folders searched for them (results/runs)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--out-paper", type=Path, required=True)
    p.add_argument("--out-figure", type=Path, required=True)
    args = p.parse_args()
    files = [f for r in args.results for f in (sorted(r.rglob("*.json")) if r.is_dir() else [r])]
    stages.aggregate(files, cli.load(args), args.out, args.out_paper, args.out_figure)


if __name__ == "__main__":
    cli.run(main)
