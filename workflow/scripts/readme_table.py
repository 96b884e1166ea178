"""README's default-run table: `record` (after `make run`: its wall time, machine, commit) and
`update` (rewrite the marked block of README.md from results/tables.csv and that record)."""

from pathlib import Path

from microai import cli
from microai.report.readme import record_run, update_readme


def main() -> None:
    p = cli.parser(__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    record = sub.add_parser("record", help="record the run that just wrote the table")
    record.add_argument("--table", type=Path, default=Path("results/tables.csv"))
    record.add_argument("--started", type=float, required=True, help="start of the run (epoch seconds)")
    record.add_argument("--cores", required=True)
    record.add_argument("--commit", required=True, help="the commit the run started from")
    record.add_argument("--out", type=Path, required=True)
    record.add_argument("--tflm-tree", help="the TFLite Micro tree the run was given (MICROAI_TFLM_TREE)")
    update = sub.add_parser("update", help="rewrite README.md's default-run block")
    update.add_argument("--table", type=Path, default=Path("results/tables.csv"))
    update.add_argument("--record", type=Path, help="the run record written by `record`")
    update.add_argument("--board", default="qemu-m4")
    update.add_argument("readme", type=Path)
    args = p.parse_args()
    if args.command == "record":
        if not record_run(args.table, args.started, args.cores, args.commit, args.out, args.tflm_tree):
            print(f"{args.table} was not rewritten by this run: {args.out} keeps the run that wrote it")
    else:
        print(update_readme(args.readme, args.table, args.record, args.board))


if __name__ == "__main__":
    cli.run(main)
