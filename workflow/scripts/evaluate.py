"""Stage evaluate: test accuracy of one precision with the reference executor."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--graph", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--precision", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stages.evaluate(args.graph, args.data, args.precision, args.out)


if __name__ == "__main__":
    cli.run(main)
