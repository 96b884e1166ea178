/*
 * QEMU mps2-an386 (Cortex-M4F): CMSDK UART0 for the protocol, the FPGAIO free-running
 * counter (25 MHz of virtual time) as cycle counter, AIRCR reset to end QEMU (-no-reboot).
 * With -icount shift=N one instruction lasts 2^N ns, so instructions = ticks * 40 / 2^N
 * (the conversion is done on the host, microai/deploy/boards/qemu_m4.py).
 */
#include "board.h"
#include "cortex_m.h"

#define UART0_DATA REG32(0x40004000u)
#define UART0_STATE REG32(0x40004004u)
#define UART0_CTRL REG32(0x40004008u)
#define UART0_BAUDDIV REG32(0x40004010u)
#define UART_STATE_TX_FULL 1u
#define UART_CTRL_TX_ENABLE 1u

#define FPGAIO_COUNTER REG32(0x40028018u)

const char board_name[] = "qemu-m4";

void board_init(void)
{
    UART0_BAUDDIV = 16;
    UART0_CTRL = UART_CTRL_TX_ENABLE;
}

void board_putc(char c)
{
    while (UART0_STATE & UART_STATE_TX_FULL) {
    }
    UART0_DATA = (uint8_t)c;
}

uint32_t board_cycles(void)
{
    return FPGAIO_COUNTER;
}

void board_exit(int status)
{
    (void)status; /* the END / FAULT line carries the status; QEMU exits 0 on reset */
    __asm volatile("dsb" ::: "memory");
    SCB_AIRCR = AIRCR_SYSRESETREQ;
    for (;;) {
    }
}
