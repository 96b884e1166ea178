"""Stage quantize_ptq: post-training fixed-point quantization calibrated on the training set."""

from pathlib import Path

from microai import cli, stages
from microai.config import section


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--graph", type=Path, required=True, help="float32 graph artifact")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset (.npz)")
    p.add_argument("--precision", required=True, help="a key of precisions: in the parameters")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    precision = section(cli.load(args), "precisions", args.precision)
    stages.quantize_ptq(args.graph, args.data, precision, args.out)


if __name__ == "__main__":
    cli.run(main)
