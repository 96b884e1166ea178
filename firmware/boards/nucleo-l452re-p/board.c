/*
 * NUCLEO-L452RE-P (STM32L452RE), register level from RM0394:
 * MSI range 11 = 48 MHz with 2 flash wait states (ART prefetch + caches on),
 * USART2 on PA2/PA3 (AF7) = the ST-LINK virtual COM port, 115200 8N1, DWT->CYCCNT.
 */
#include "board.h"
#include "cortex_m.h"

#define FLASH_ACR REG32(0x40022000u)
#define FLASH_ACR_LATENCY_MASK 0x7u
#define FLASH_ACR_LATENCY_2WS 2u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

#define RCC_CR REG32(0x40021000u)
#define RCC_CR_MSIRDY (1u << 1)
#define RCC_CR_MSIRGSEL (1u << 3)
#define RCC_CR_MSIRANGE_MASK (0xFu << 4)
#define RCC_CR_MSIRANGE_48MHZ (11u << 4)
#define RCC_AHB2ENR REG32(0x4002104Cu)
#define RCC_AHB2ENR_GPIOAEN 1u
#define RCC_APB1ENR1 REG32(0x40021058u)
#define RCC_APB1ENR1_USART2EN (1u << 17)

#define GPIOA_MODER REG32(0x48000000u)
#define GPIOA_AFRL REG32(0x48000020u)
#define GPIO_MODE_AF 2u
#define GPIO_AF7_USART2 7u

#define USART2_CR1 REG32(0x40004400u)
#define USART2_BRR REG32(0x4000440Cu)
#define USART2_ISR REG32(0x4000441Cu)
#define USART2_TDR REG32(0x40004428u)
#define USART_CR1_UE 1u
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_ISR_TC (1u << 6)
#define USART_ISR_TXE (1u << 7)

#define SYSCLK_HZ 48000000u
#define BAUD 115200u

const char board_name[] = "nucleo-l452re-p";

static void clock_48mhz(void)
{
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | FLASH_ACR_LATENCY_2WS | FLASH_ACR_PRFTEN
                | FLASH_ACR_ICEN | FLASH_ACR_DCEN;
    while ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_ACR_LATENCY_2WS) {
    }
    while (!(RCC_CR & RCC_CR_MSIRDY)) {
    }
    RCC_CR = (RCC_CR & ~RCC_CR_MSIRANGE_MASK) | RCC_CR_MSIRANGE_48MHZ | RCC_CR_MSIRGSEL;
    while (!(RCC_CR & RCC_CR_MSIRDY)) {
    }
}

static void usart2_init(void)
{
    RCC_AHB2ENR |= RCC_AHB2ENR_GPIOAEN;
    RCC_APB1ENR1 |= RCC_APB1ENR1_USART2EN;
    (void)RCC_APB1ENR1; /* read back: the clock is running before the first register write */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 4)) | (GPIO_MODE_AF << 4) | (GPIO_MODE_AF << 6);
    GPIOA_AFRL = (GPIOA_AFRL & ~(0xFFu << 8)) | (GPIO_AF7_USART2 << 8) | (GPIO_AF7_USART2 << 12);
    USART2_CR1 = 0;
    USART2_BRR = (SYSCLK_HZ + BAUD / 2u) / BAUD;
    USART2_CR1 = USART_CR1_TE | USART_CR1_RE | USART_CR1_UE;
}

void board_init(void)
{
    clock_48mhz();
    usart2_init();
    dwt_cycle_counter_start();
}

void board_putc(char c)
{
    while (!(USART2_ISR & USART_ISR_TXE)) {
    }
    USART2_TDR = (uint8_t)c;
}

uint32_t board_cycles(void)
{
    return DWT_CYCCNT;
}

void board_exit(int status)
{
    (void)status;
    while (!(USART2_ISR & USART_ISR_TC)) {
    }
    cortex_m_halt();
}
