/* Native build of the harness (bit-exactness on the whole test set): stdout as the UART,
   CLOCK_MONOTONIC nanoseconds as the cycle counter, no stack measurement. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "board.h"

const char board_name[] = "host";

void board_init(void)
{
}

void board_putc(char c)
{
    putchar(c);
}

uint32_t board_cycles(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint32_t)((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
}

int32_t board_stack_used(void)
{
    return -1;
}

void board_exit(int status)
{
    fflush(stdout);
    exit(status);
}
