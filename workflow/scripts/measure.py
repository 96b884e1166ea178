"""Stage measure: run the firmware, check its outputs against the reference, report time and energy."""

from microai import cli, stages


def main() -> None:
    cli.measure_stage(__doc__, "graph", "compile", "flash", stages.measure)


if __name__ == "__main__":
    cli.run(main)
