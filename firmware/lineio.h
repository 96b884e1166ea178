/* Minimal line output over board_putc(): no printf (newlib-nano's costs kilobytes of flash). */
#ifndef MICROAI_LINEIO_H
#define MICROAI_LINEIO_H

#include <stdint.h>

void put_str(const char *s);
void put_u32(uint32_t v);
void put_i32(int32_t v);
/* Eight lower-case hex digits, no prefix. */
void put_hex32(uint32_t v);
/* IEEE-754 bit pattern of a float as eight hex digits, so the host compares bit for bit. */
void put_float_bits(float f);
void put_nl(void);

#endif
