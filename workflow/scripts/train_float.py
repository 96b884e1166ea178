"""Stage train_float: train one float32 model; the run index is the seed."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--data", type=Path, required=True, help="prepared dataset (.npz)")
    p.add_argument("--model", required=True)
    p.add_argument("--filters", type=int, required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True, help="checkpoint (.pt)")
    p.add_argument("--metrics", type=Path, required=True, help="metrics (.json)")
    args = p.parse_args()
    stages.train_float(args.data, args.model, args.filters, args.run, cli.load(args), args.out, args.metrics,
                       threads=args.threads)


if __name__ == "__main__":
    cli.run(main)
