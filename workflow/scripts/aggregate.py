"""Stage aggregate: the sweep's per-run results -> tables, metrics, plot data and the paper's figures."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--runs", type=Path, required=True,
                   help="folder of the per-run results (results/runs); only the sweep's files are read")
    p.add_argument("--out-dir", type=Path, required=True, help="folder receiving the outputs (results)")
    args = p.parse_args()
    stages.aggregate(cli.load(args), args.runs, args.out_dir)


if __name__ == "__main__":
    cli.run(main)
