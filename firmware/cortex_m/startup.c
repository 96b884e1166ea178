/*
 * Reset and fault handling shared by the Cortex-M4F boards: vector table, FPU enable,
 * .data/.bss initialisation, stack painting for the high-water mark, and fault handlers
 * that report the fault status registers and the stacked PC over the UART.
 * Symbols come from sections.ld.
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "cortex_m.h"
#include "lineio.h"

#define STACK_PAINT 0xC0FFEE11u
/* Exit status of a run stopped by a fault (the FAULT line carries the details). */
#define FAULT_STATUS 3

extern uint32_t __data_load[], __data_start[], __data_end[];
extern uint32_t __bss_start[], __bss_end[];
extern uint32_t __stack_limit[], __stack_top[];

int main(void);
void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void)
{
    SCB_CPACR |= 0xFu << 20; /* CP10/CP11 full access: the FPU */
    __asm volatile("dsb\n\tisb" ::: "memory");

    memcpy(__data_start, __data_load, (size_t)((char *)__data_end - (char *)__data_start));
    memset(__bss_start, 0, (size_t)((char *)__bss_end - (char *)__bss_start));

    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = __stack_limit; p < sp; p++) {
        *p = STACK_PAINT;
    }

    int status = main();
    board_exit(status);
}

int32_t board_stack_used(void)
{
    const uint32_t *p = __stack_limit;
    while (p < __stack_top && *p == STACK_PAINT) {
        p++;
    }
    return (int32_t)((const char *)__stack_top - (const char *)p);
}

static const char *exception_name(uint32_t number)
{
    switch (number) {
    case 2: return "NMI";
    case 3: return "HardFault";
    case 4: return "MemManage";
    case 5: return "BusFault";
    case 6: return "UsageFault";
    default: return "UnexpectedException";
    }
}

/* frame: the exception stack frame (r0-r3, r12, lr, pc, xpsr). */
__attribute__((used, noreturn)) static void fault_report(const uint32_t *frame)
{
    uint32_t ipsr;
    __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
    put_nl();
    put_str("FAULT ");
    put_str(exception_name(ipsr & 0x1FFu));
    put_str(" CFSR=0x");
    put_hex32(SCB_CFSR);
    put_str(" HFSR=0x");
    put_hex32(SCB_HFSR);
    put_str(" MMFAR=0x");
    put_hex32(SCB_MMFAR);
    put_str(" BFAR=0x");
    put_hex32(SCB_BFAR);
    put_str(" PC=0x");
    put_hex32(frame[6]);
    put_str(" LR=0x");
    put_hex32(frame[5]);
    put_nl();
    board_exit(FAULT_STATUS);
}

/* Picks the stack the frame was pushed on (EXC_RETURN bit 2) and reports. */
__attribute__((naked)) void Fault_Handler(void)
{
    __asm volatile(
        "tst lr, #4\n\t"
        "ite eq\n\t"
        "mrseq r0, msp\n\t"
        "mrsne r0, psp\n\t"
        "b fault_report\n\t");
}

typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used)) static const vector_t vector_table[16] = {
    (vector_t)__stack_top,
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};
