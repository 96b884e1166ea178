/* The board API the harness runs on: one implementation per folder under boards/. */
#ifndef MICROAI_BOARD_H
#define MICROAI_BOARD_H

#include <stdint.h>

/* Name printed in the protocol header; equals the Python board's name. */
extern const char board_name[];

/* Clocks, UART and cycle counter; called once before anything is printed. */
void board_init(void);

/* Blocking write of one byte to the board's UART (stdout on the host). */
void board_putc(char c);

/* Free-running 32-bit counter in board units (cycles, timer ticks or ns); deltas wrap safely. */
uint32_t board_cycles(void);

/* Bytes of stack used since reset (the stack is painted at reset), or -1 when the board cannot tell. */
int32_t board_stack_used(void);

/* Flush the UART and stop: exit the emulator / process, or park a real core. */
__attribute__((noreturn)) void board_exit(int status);

#endif
