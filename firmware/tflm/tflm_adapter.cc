/*
 * TensorFlow Lite Micro behind the harness's model interface (model.h, firmware/main.c).
 *
 * model_setup() builds the interpreter once, before the timed inferences: op resolver holding only
 * the model's operators, tensor arena, AllocateTensors(). cnn() copies one input vector into the
 * input tensor, invokes the interpreter and copies the output tensor out. The interpreter's own
 * messages (MicroPrintf) reach the UART as "LOG <text>" lines; a failure ends the report with
 * "END error". Everything model-specific comes from the generated tflm_model.h.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <new>

#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"

extern "C" {
#include "board.h"
#include "lineio.h"
}
#include "model.h"
#include "tflm_model.h"

/* One entry per operator in execution order: the kernel's invoke function and the operator's name.
 * Filled by model_setup(); the cycle estimator (microai/deploy/estimate.py) reads it to attribute
 * what runs inside each invoke call to its operator. Not used by the inference itself. */
struct MicroaiTflmOperator {
    const void *invoke;
    const char *name;
};
extern "C" __attribute__((used)) MicroaiTflmOperator microai_tflm_operators[kTflmOperatorCount];
MicroaiTflmOperator microai_tflm_operators[kTflmOperatorCount];

namespace {

alignas(16) uint8_t tensor_arena[kTflmArenaBytes];
/* Static storage constructed in place: no global constructors, no destructors registered at exit. */
alignas(TflmResolver) uint8_t resolver_storage[sizeof(TflmResolver)];
alignas(tflite::MicroInterpreter) uint8_t interpreter_storage[sizeof(tflite::MicroInterpreter)];
tflite::MicroInterpreter *interpreter;
void *input_data;
const void *output_data;
bool log_at_line_start = true;

/* DebugLog callback: TFLM prints a message, then "\r\n"; each line goes out as "LOG <text>". */
void log_to_uart(const char *text)
{
    for (; *text; text++) {
        if (*text == '\r') {
            continue;
        }
        if (log_at_line_start && *text != '\n') {
            put_str("LOG ");
        }
        board_putc(*text);
        log_at_line_start = *text == '\n';
    }
}

void end_with_error(const char *what)
{
    MicroPrintf("%s", what);
    put_str("END error\n");
    board_exit(1);
}

bool tensor_matches(const TfLiteTensor *tensor, TfLiteType type, size_t count)
{
    return tensor != nullptr && tensor->type == type && tensor->bytes == count * sizeof(number_t);
}

}  // namespace

extern "C" int model_setup(void)
{
    RegisterDebugLogCallback(log_to_uart);
    const tflite::Model *model = tflite::GetModel(tflm_model_data);
    if (model->version() != TFLITE_SCHEMA_VERSION) {
        MicroPrintf("model schema version %d, this TFLite Micro reads version %d", (int)model->version(),
                    TFLITE_SCHEMA_VERSION);
        return 1;
    }
    TflmResolver *resolver = new (resolver_storage) TflmResolver();
    if (tflm_register_operators(*resolver) != kTfLiteOk) {
        MicroPrintf("registering the model's operators failed");
        return 1;
    }
    interpreter = new (interpreter_storage) tflite::MicroInterpreter(model, *resolver, tensor_arena, kTflmArenaBytes);
    if (interpreter->AllocateTensors() != kTfLiteOk) {
        MicroPrintf("AllocateTensors() failed with a tensor arena of %u bytes", (unsigned)kTflmArenaBytes);
        return 1;
    }
    if (!tensor_matches(interpreter->input(0), kTflmTensorType, MODEL_INPUT_SIZE)
        || !tensor_matches(interpreter->output(0), kTflmTensorType, MODEL_OUTPUT_SAMPLES)) {
        MicroPrintf("the model's input/output tensors differ from model.h (%u/%u values of number_t)",
                    (unsigned)MODEL_INPUT_SIZE, (unsigned)MODEL_OUTPUT_SAMPLES);
        return 1;
    }
    input_data = interpreter->input(0)->data.data;
    output_data = interpreter->output(0)->data.data;
    for (size_t i = 0; i < kTflmOperatorCount; i++) {
        const TFLMRegistration *registration = resolver->FindOp(kTflmOperators[i]);
        microai_tflm_operators[i].invoke = registration != nullptr ? (const void *)registration->invoke : nullptr;
        microai_tflm_operators[i].name = kTflmOperatorNames[i];
    }
    put_str("ARENA ");
    put_u32((uint32_t)interpreter->arena_used_bytes());
    board_putc(' ');
    put_u32((uint32_t)kTflmArenaBytes);
    put_nl();
    return 0;
}

extern "C" void cnn(const number_t input[MODEL_INPUT_SIZE], number_t output[MODEL_OUTPUT_SAMPLES])
{
    memcpy(input_data, input, MODEL_INPUT_SIZE * sizeof(number_t));
    if (interpreter->Invoke() != kTfLiteOk) {
        end_with_error("Invoke() failed");
    }
    memcpy(output, output_data, MODEL_OUTPUT_SAMPLES * sizeof(number_t));
}
