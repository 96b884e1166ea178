"""Stage evaluate_tflm: accuracy and arena of a .tflite model in the TFLM host runtime (whole test set)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--tflite", type=Path, required=True)
    p.add_argument("--graph", type=Path, required=True, help="the float32 graph it was converted from")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--precision", required=True, choices=["float32", "int8"])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    stages.evaluate_tflm(args.tflite, args.graph, args.data, args.precision, args.out)


if __name__ == "__main__":
    cli.run(main)
