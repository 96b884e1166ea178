/*
 * MicroAI on-target harness: runs the generated inference library on the embedded test
 * vectors and reports over the UART with a line protocol (see microai/deploy/protocol.py):
 *
 *   MICROAI v1 board=<name> vectors=<N> outputs=<K> dtype=<f32|i8|i16>
 *   ARENA <used> <size>                      tensor arena bytes (runtimes that have one, e.g. TFLM)
 *   LOG <text>                               a message of the model's runtime
 *   V <i> <cycles> <out0> ... <outK-1>      one line per vector, cycles in board units
 *   STACK <bytes>                            stack high-water mark (boards that paint it)
 *   END ok                                   (END error when model_setup() or an inference failed)
 *
 * Integer outputs are printed in decimal, floats as hex IEEE-754 bit patterns.
 */
#include <stdint.h>

#include "board.h"
#include "lineio.h"
#include "model.h"
#include "number.h"
#include "vectors.h"

#define NUMBER_DTYPE _Generic((model_output_t)0, float: "f32", int8_t: "i8", int16_t: "i16")

static model_output_t output[MODEL_OUTPUT_SAMPLES];

/* One-time set-up before the timed inferences; 0 on success. Generated C needs none (this default);
 * a runtime such as TFLM's adapter (firmware/tflm) defines its own to build its interpreter. */
__attribute__((weak)) int model_setup(void)
{
    return 0;
}

static void put_number(model_output_t v)
{
    _Generic(v, float: put_float_bits, default: put_i32)(v);
}

int main(void)
{
    board_init();
    put_str("MICROAI v1 board=");
    put_str(board_name);
    put_str(" vectors=");
    put_u32(vector_count);
    put_str(" outputs=");
    put_u32(MODEL_OUTPUT_SAMPLES);
    put_str(" dtype=");
    put_str(NUMBER_DTYPE);
    put_nl();
    if (model_setup() != 0) {
        put_str("END error\n");
        board_exit(1);
    }

    for (uint32_t i = 0; i < vector_count; i++) {
        uint32_t start = board_cycles();
        cnn(vectors[i], output);
        uint32_t elapsed = board_cycles() - start;
        put_str("V ");
        put_u32(i);
        board_putc(' ');
        put_u32(elapsed);
        for (uint32_t k = 0; k < MODEL_OUTPUT_SAMPLES; k++) {
            board_putc(' ');
            put_number(output[k]);
        }
        put_nl();
    }

    int32_t stack = board_stack_used();
    if (stack >= 0) {
        put_str("STACK ");
        put_u32((uint32_t)stack);
        put_nl();
    }
    put_str("END ok\n");
    board_exit(0);
}
