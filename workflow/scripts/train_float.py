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
    cli.threads_arg(p)
    p.add_argument("--out", type=Path, required=True, help="checkpoint (.pt)")
    p.add_argument("--metrics", type=Path, required=True, help="metrics (.json)")
    args = p.parse_args()
    params = cli.load(args)
    stages.train_float(args.data, args.model, args.filters, args.run, params, args.out, args.metrics,
                       threads=cli.threads(args, params, "train_float"))


if __name__ == "__main__":
    cli.run(main)
