"""``nucleo-l452re-p``: ST NUCLEO-L452RE-P (STM32L452RE, 512 KiB flash, 128 KiB SRAM1, 48 MHz)."""

from __future__ import annotations

from microai.deploy.boards.serial_board import SerialBoard


class NucleoL452REP(SerialBoard):
    name = "nucleo-l452re-p"
    pyocd_target = "stm32l452retx"
    run_current_a = 4.80e-3  # at 48 MHz, the paper's figure
