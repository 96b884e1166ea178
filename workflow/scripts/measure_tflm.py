"""Stage measure_tflm: run a TFLM image, compare its outputs bit for bit with the TFLM host runtime's,
report cycles (per operator), time, energy, ROM and RAM."""

from microai import cli, stages


def main() -> None:
    cli.measure_stage(__doc__, "tflite", "compile_tflm", "flash_tflm", stages.measure_tflm)


if __name__ == "__main__":
    cli.run(main)
