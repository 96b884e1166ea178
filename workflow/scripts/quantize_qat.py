"""Stage quantize_qat: quantization-aware training from the float model, exported with learned formats."""

from pathlib import Path

from microai import cli, stages
from microai.config import section


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--checkpoint", type=Path, required=True, help="trained float32 checkpoint")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset (.npz)")
    p.add_argument("--run", type=int, required=True)
    p.add_argument("--precision", required=True, help="a key of precisions: in the parameters")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, required=True)
    args = p.parse_args()
    params = cli.load(args)
    schedule = section(params, "qat", args.data.stem)
    precision = section(params, "precisions", args.precision)
    stages.quantize_qat(args.checkpoint, args.data, args.run, schedule, precision, args.out, args.metrics,
                        threads=args.threads)


if __name__ == "__main__":
    cli.run(main)
