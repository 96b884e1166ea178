"""A hand-written stand-in for a generated library (one dense layer + ReLU) and its numpy twin.

Deploy tests use it so they do not depend on codegen: same interface (number.h, model.h, cnn(),
layer_<i>_<name> functions), tiny enough for Unicorn's Python hooks. ``body`` lets a test
inject code into cnn() (a bad memory access, a hang, a large constant table).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

# Cross-compiled tests need Debian's arm-none-eabi-gcc, emulated ones qemu-system-arm too (`make setup`).
needs_arm_gcc = pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"),
                                   reason="needs arm-none-eabi-gcc (make setup)")
needs_qemu = pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                                reason="needs qemu-system-arm and arm-none-eabi-gcc (make setup)")

INPUTS, OUTPUTS, SHIFT = 8, 3, 4
C_TYPES = {np.dtype(np.int16): "int16_t", np.dtype(np.float32): "float"}


def standin_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(-50, 50, (OUTPUTS, INPUTS)), rng.integers(-200, 200, OUTPUTS)


def write_standin(directory: Path, dtype: np.dtype | type = np.int16, body: str = "",
                  extra: str = "", seed: int = 0) -> Path:
    """Write number.h, model.h and model.c computing relu(W x + b) (int16: >> SHIFT, saturated)."""
    directory.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(dtype)
    w, b = standin_weights(seed)
    integer = dtype.kind == "i"
    ctype = C_TYPES[dtype]
    (directory / "number.h").write_text(
        "#include <stdint.h>\n"
        f"typedef {ctype} number_t;\n"
        f"typedef {'int32_t' if integer else 'float'} long_number_t;\n"
        "typedef number_t model_input_t;\ntypedef number_t model_output_t;\n")
    (directory / "model.h").write_text(
        '#include "number.h"\n'
        f"#define MODEL_INPUT_SIZE {INPUTS}\n#define MODEL_OUTPUT_SAMPLES {OUTPUTS}\n"
        "#define MODEL_ACTIVATION_BYTES 0\n"
        "void cnn(const number_t input[MODEL_INPUT_SIZE], number_t output[MODEL_OUTPUT_SAMPLES]);\n")
    rows = ",".join("{" + ",".join(map(str, r)) + "}" for r in w)
    if integer:
        store = (f"acc >>= {SHIFT};\n        if (acc > 32767) acc = 32767;\n"
                 "        if (acc < -32768) acc = -32768;\n        y[o] = (number_t)acc;")
    else:
        store = "y[o] = acc;"
    (directory / "model.c").write_text(
        '#include "model.h"\n'
        f"static const number_t weight[{OUTPUTS}][{INPUTS}] = {{{rows}}};\n"
        f"static const long_number_t bias[{OUTPUTS}] = {{{','.join(map(str, b))}}};\n"
        f"{extra}\n"
        "__attribute__((noinline)) void layer_0_dense(const number_t *x, number_t *y)\n{\n"
        f"    for (int o = 0; o < {OUTPUTS}; o++) {{\n"
        "        long_number_t acc = bias[o];\n"
        f"        for (int i = 0; i < {INPUTS}; i++) acc += (long_number_t)x[i] * weight[o][i];\n"
        f"        {store}\n    }}\n}}\n"
        "__attribute__((noinline)) void layer_1_relu(number_t *y)\n{\n"
        f"    for (int o = 0; o < {OUTPUTS}; o++) if (y[o] < 0) y[o] = 0;\n}}\n"
        "void cnn(const number_t input[MODEL_INPUT_SIZE], number_t output[MODEL_OUTPUT_SAMPLES])\n{\n"
        f"    {body}\n    layer_0_dense(input, output);\n    layer_1_relu(output);\n}}\n")
    return directory


def standin_reference(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the stand-in computes, in numpy (float32 accumulation in input order, like the C)."""
    w, b = standin_weights(seed)
    if x.dtype.kind == "i":
        acc = x.astype(np.int64) @ w.T.astype(np.int64) + b
        return np.maximum(np.clip(acc >> SHIFT, -32768, 32767), 0).astype(x.dtype)
    acc = np.tile(b.astype(np.float32), (len(x), 1))
    for i in range(INPUTS):
        acc = (acc + x[:, i:i + 1] * w[:, i].astype(np.float32)).astype(np.float32)
    return np.maximum(acc, np.float32(0))


def standin_vectors(dtype: np.dtype, n: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "i":
        return rng.integers(-3000, 3000, (n, INPUTS)).astype(dtype)
    return rng.normal(0, 10, (n, INPUTS)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_host_build_of_standin_matches_numpy(tmp_path: Path, dtype: type) -> None:
    from microai.deploy.boards import get_board

    x = standin_vectors(np.dtype(dtype), n=5)
    board = get_board("host")
    result = board.run(board.build(write_standin(tmp_path / "lib", np.dtype(dtype)), x, tmp_path / "out"))
    expected = standin_reference(x)
    assert result.outputs.dtype == expected.dtype
    np.testing.assert_array_equal(result.outputs.view(np.uint8), expected.view(np.uint8))
    assert result.how_measured.startswith("host") and result.stack_bytes_used is None
