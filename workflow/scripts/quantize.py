"""Stage quantize (DVC): any precision from the trained checkpoint, dispatched on its method."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--precision", required=True)
    cli.threads_arg(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True)
    args = p.parse_args()
    params = cli.load(args)
    stages.quantize(args.precision, params, args.checkpoint, args.data, args.run, args.out,
                    args.metrics, threads=cli.threads(args, params, "quantize"))


if __name__ == "__main__":
    cli.run(main)
