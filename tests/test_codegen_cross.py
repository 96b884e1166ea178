"""The generated C cross-compiles warning-free for the Cortex-M4F and keeps one symbol per layer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_codegen_graphs import resnet_graph
from test_codegen_support import Builder, quantized
from test_deploy_support import needs_arm_gcc

from codegen import convert
from microai.graph import Graph

ARM_CFLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=c99",
              "-Wall", "-Wextra", "-Werror", "-O2", "-c"]

pytestmark = needs_arm_gcc


def every_operator_2d() -> Graph:
    b = Builder((2, 9, 9))
    x = b.add("ZeroPadding2D", ["x"], {"padding": [1, 1, 1, 1]})
    x = b.pool("AvgPool2D", x, 2)
    y = b.conv(x, 2, 3, padding=[1, 1, 1, 1], relu=True)
    x = b.scale(b.add("Add", [y, x]))
    x = b.pool("MaxPool2D", b.add("ReLU", [x]), 2)
    b.add("Softmax", [b.dense(b.add("Flatten", [x]), 4)])
    return b.graph()


@pytest.mark.parametrize("precision", ["float32", "int16", "int8", "int9"])
@pytest.mark.parametrize("model", ["resnet", "every_operator_2d"])
def test_cross_compiles_for_cortex_m4(model: str, precision: str, tmp_path: Path) -> None:
    graph = resnet_graph(16) if model == "resnet" else every_operator_2d()
    x = np.random.default_rng(0).standard_normal((16, *graph.input.shape)).astype(np.float32)
    result = convert(quantized(graph, x, precision), tmp_path / "c")
    obj = tmp_path / "model.o"
    proc = subprocess.run(["arm-none-eabi-gcc", *ARM_CFLAGS, "-I", str(tmp_path / "c"),
                           str(tmp_path / "c" / "model.c"), "-o", str(obj)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    nm = subprocess.run(["arm-none-eabi-nm", str(obj)], capture_output=True, text=True, check=True)
    symbols = nm.stdout
    defined = {line.split()[-1] for line in symbols.splitlines() if line.split()[-2] in "tT"}
    assert {layer["function"] for layer in result.layers} | {"cnn"} <= defined
