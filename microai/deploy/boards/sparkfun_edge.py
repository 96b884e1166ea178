"""``sparkfun-edge``: SparkFun Edge (Ambiq Apollo3, 960 KiB usable flash at 0xC000, 384 KiB RAM, 48 MHz)."""

from __future__ import annotations

from microai.deploy.boards.serial_board import SerialBoard


class SparkfunEdge(SerialBoard):
    name = "sparkfun-edge"
    pyocd_target = "ama3b1kk_kbr"
    run_current_a = 0.82e-3  # at 48 MHz, the paper's figure
