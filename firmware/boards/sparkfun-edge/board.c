/*
 * SparkFun Edge (Ambiq Apollo3), register level from the Apollo3 datasheet:
 * core clock HFRC 48 MHz (CLKGEN CCTRL.CORESEL = 0, the reset value divides by 2),
 * UART0 (PL011-like) on pad 48 TX / pad 49 RX = the board's USB serial bridge,
 * 24 MHz UART clock, 115200 8N1, DWT->CYCCNT.
 */
#include "board.h"
#include "cortex_m.h"

#define CLKGEN_CLKKEY REG32(0x40004014u)
#define CLKGEN_CCTRL REG32(0x40004018u)
#define CLKGEN_KEY 0x47u
#define CCTRL_CORESEL_HFRC 0u

#define PWRCTRL_DEVPWREN REG32(0x40021008u)
#define PWRCTRL_DEVPWRSTATUS REG32(0x40021018u)
#define DEVPWREN_PWRUART0 (1u << 7)
#define DEVPWRSTATUS_HCPA (1u << 2)

#define GPIO_PADREGM REG32(0x40010030u)
#define GPIO_PADKEY REG32(0x40010060u)
#define GPIO_PADKEY_UNLOCK 0x73u
/* PADREGM byte 0 = pad 48, byte 1 = pad 49: FNCSEL (bits 5:3) 0 = UART0 TX / RX; bit 1 = input enable. */
#define PAD49_INPEN (1u << 9)

#define UART0_DR REG32(0x4001C000u)
#define UART0_FR REG32(0x4001C018u)
#define UART0_IBRD REG32(0x4001C024u)
#define UART0_FBRD REG32(0x4001C028u)
#define UART0_LCRH REG32(0x4001C02Cu)
#define UART0_CR REG32(0x4001C030u)
#define UART_FR_BUSY (1u << 3)
#define UART_FR_TXFF (1u << 5)
#define UART_LCRH_FEN (1u << 4)
#define UART_LCRH_WLEN8 (3u << 5)
#define UART_CR_UARTEN 1u
#define UART_CR_CLKEN (1u << 3)
#define UART_CR_CLKSEL_24MHZ (1u << 4)
#define UART_CR_TXE (1u << 8)
#define UART_CR_RXE (1u << 9)

#define UART_CLK_HZ 24000000u
#define BAUD 115200u

const char board_name[] = "sparkfun-edge";

static void uart0_init(void)
{
    PWRCTRL_DEVPWREN |= DEVPWREN_PWRUART0;
    while (!(PWRCTRL_DEVPWRSTATUS & DEVPWRSTATUS_HCPA)) {
    }
    UART0_CR = UART_CR_CLKEN | UART_CR_CLKSEL_24MHZ;
    /* divisor = clk / (16 * baud) in 16.6 fixed point */
    uint32_t div64 = (UART_CLK_HZ * 4u + BAUD / 2u) / BAUD;
    UART0_IBRD = div64 >> 6;
    UART0_FBRD = div64 & 0x3Fu;
    UART0_LCRH = UART_LCRH_WLEN8 | UART_LCRH_FEN;
    UART0_CR = UART_CR_CLKEN | UART_CR_CLKSEL_24MHZ | UART_CR_UARTEN | UART_CR_TXE | UART_CR_RXE;

    GPIO_PADKEY = GPIO_PADKEY_UNLOCK;
    GPIO_PADREGM = (GPIO_PADREGM & ~0xFFFFu) | PAD49_INPEN;
    GPIO_PADKEY = 0;
}

void board_init(void)
{
    CLKGEN_CLKKEY = CLKGEN_KEY;
    CLKGEN_CCTRL = CCTRL_CORESEL_HFRC;
    CLKGEN_CLKKEY = 0;
    uart0_init();
    dwt_cycle_counter_start();
}

void board_putc(char c)
{
    while (UART0_FR & UART_FR_TXFF) {
    }
    UART0_DR = (uint8_t)c;
}

uint32_t board_cycles(void)
{
    return DWT_CYCCNT;
}

void board_exit(int status)
{
    (void)status;
    while (UART0_FR & UART_FR_BUSY) {
    }
    cortex_m_halt();
}
