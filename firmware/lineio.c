#include "lineio.h"

#include <string.h>

#include "board.h"

void put_str(const char *s)
{
    while (*s) {
        board_putc(*s++);
    }
}

void put_u32(uint32_t v)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        board_putc(digits[--n]);
    }
}

void put_i32(int32_t v)
{
    if (v < 0) {
        board_putc('-');
        put_u32(0u - (uint32_t)v);
    } else {
        put_u32((uint32_t)v);
    }
}

void put_hex32(uint32_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int shift = 28; shift >= 0; shift -= 4) {
        board_putc(hex[(v >> shift) & 0xFu]);
    }
}

void put_float_bits(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    put_hex32(bits);
}

void put_nl(void)
{
    board_putc('\n');
}
