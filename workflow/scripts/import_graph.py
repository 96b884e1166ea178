"""Stage import_graph: trained PyTorch checkpoint -> float32 graph IR artifact (torch.fx)."""

from pathlib import Path

from microai import cli, stages


def main() -> None:
    p = cli.parser(__doc__)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="prepared dataset (.npz), for the input shape")
    p.add_argument("--out", type=Path, required=True, help="graph artifact (<stem>.json + <stem>.npz)")
    args = p.parse_args()
    stages.import_graph(args.checkpoint, args.data, args.out)


if __name__ == "__main__":
    cli.run(main)
