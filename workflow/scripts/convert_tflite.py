"""Stage convert_tflite: float graph IR -> Keras -> float32.tflite and int8.tflite (TFLite PTQ)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    p.add_argument("--graph", type=Path, required=True, help="float32 graph artifact")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset (.npz): representative inputs")
    cli.threads_arg(p)
    p.add_argument("--out-float", type=Path, required=True, help="float32 .tflite")
    p.add_argument("--out-int8", type=Path, required=True, help="int8 .tflite")
    args = p.parse_args()
    params = cli.load(args)
    stages.convert_tflite(args.graph, args.data, params, args.out_float, args.out_int8,
                          threads=cli.threads(args, params, "convert_tflite"))


if __name__ == "__main__":
    cli.run(main)
