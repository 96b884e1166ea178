"""Stage tflm_library: TFLM + CMSIS-NN of the named tree as a static library for the Cortex-M4F boards
(compiled once per tree and flag set into a content-keyed cache, then copied here)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    cli.params_arg(p)
    cli.threads_arg(p)
    p.add_argument("--out", type=Path, required=True, help="libtflm.a (its description goes to <out>.json)")
    args = p.parse_args()
    params = cli.load(args)
    stages.tflm_library(params, params["deploy"]["opt"], args.out,
                        threads=cli.threads(args, params, "tflm_library"))


if __name__ == "__main__":
    cli.run(main)
