/* Cortex-M4 system registers shared by every Cortex-M board (ARMv7-M Architecture Reference Manual). */
#ifndef MICROAI_CORTEX_M_H
#define MICROAI_CORTEX_M_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_CFSR REG32(0xE000ED28u)
#define SCB_HFSR REG32(0xE000ED2Cu)
#define SCB_MMFAR REG32(0xE000ED34u)
#define SCB_BFAR REG32(0xE000ED38u)
#define AIRCR_SYSRESETREQ 0x05FA0004u

#define DEMCR REG32(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL REG32(0xE0001000u)
#define DWT_CTRL_CYCCNTENA 1u
#define DWT_CYCCNT REG32(0xE0001004u)

/* Start the DWT cycle counter (real silicon; QEMU does not implement it). */
static inline void dwt_cycle_counter_start(void)
{
    DEMCR |= DEMCR_TRCENA;
    DWT_CYCCNT = 0;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

/* Park the core after the run (real boards: the host has read the END line). */
__attribute__((noreturn)) static inline void cortex_m_halt(void)
{
    for (;;) {
        __asm volatile("wfi");
    }
}

#endif
