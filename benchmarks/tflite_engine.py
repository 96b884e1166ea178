"""MicroAI as an engine for a TFLite int8 model: the same ``.tflite`` run by MicroAI's generated C
(imported by ``microai.tflite.importer``) and by TFLite Micro + CMSIS-NN, side by side on the emulated
Cortex-M4F (qemu-m4).

Models (weights seeded; timing does not depend on them), each converted to a full-integer int8 ``.tflite`` by
TensorFlow's converter (post-training quantization on seeded calibration inputs):

* ``resnet1d-f<F>``: the pipeline's ResNetv1-6 on the UCI-HAR shape (9 x 128, 6 classes), converted exactly as
  the pipeline's ``convert_tflite`` stage does (graph IR -> Keras -> TFLite, batch-1 signature);
* ``resnet2d-f<F>``: the 2D ResNetv1-6 on the GTSRB shape (3 x 32 x 32, 43 classes);
* ``keras-cnn2d``: a Keras model the pipeline did not make (Conv2D 'same' stride 2, DepthwiseConv2D + ReLU6,
  1x1 Conv2D, Add, AveragePooling2D, MaxPooling2D, GlobalAveragePooling2D (MEAN), Dense + softmax).

For each model both images are built with arm-none-eabi-gcc -O2 for qemu-m4 and run on QEMU with the same
inputs; outputs are checked bit for bit against the TFLM host runtime (PyPI tflite-micro). Cycles are the
Unicorn estimator's (Cortex-M4 timing model), ROM is text + data of the image without the embedded inputs,
RAM is data + bss + the harness's stack high-water mark (TFLM's tensor arena at the bytes it used).

``--precisions int8 int16x8`` also converts the ResNets with TFLite's 16x8 (int8 weights, int16
activations); ``--pow2`` adds MicroAI's own paper-scheme int8 and int16 (Q7.9) PTQ of the same float
ResNet (checked against the reference executor): the cycles of 16x8 against int8 and int16.

    .venv/bin/python benchmarks/tflite_engine.py --models resnet1d-f16 resnet1d-f80 resnet2d-f16 keras-cnn2d
    .venv/bin/python benchmarks/tflite_engine.py --models resnet1d-f16 --precisions int8 int16x8 --pow2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from cycles_per_mac import tflm_setup  # the benchmarks' folder is the script's: first on sys.path

import codegen
from microai.deploy.boards import get_board
from microai.deploy.errors import DeployError
from microai.deploy.estimate import estimate
from microai.tflite.importer import from_tflite
from microai.tflite.runtime import run_tflm

VECTORS = 4


@dataclass
class Row:
    model: str
    precision: str
    framework: str
    macs: int
    rom_bytes: int
    ram_bytes: int
    est_cycles: int
    cycles_per_mac: float
    outputs_match_tflm_host: bool


def resnet_graph(name: str):
    """The float ResNetv1-6 of a ``resnet1d-f<F>`` / ``resnet2d-f<F>`` model name (seeded weights)."""
    import torch

    from microai.graph.torch_import import from_torch
    from microai.models.resnet import resnet

    shape, classes = ((9, 128), 6) if name.startswith("resnet1d") else ((3, 32, 32), 43)
    filters = int(name.split("-f")[1])
    torch.manual_seed(0)
    return from_torch(resnet(shape, classes, filters).eval(), shape, f"resnetv1_6_f{filters}")


def keras_cnn2d_tflite(calibration: np.ndarray) -> bytes:
    """A Keras model of another shape, converted by TensorFlow's converter directly (not through MicroAI)."""
    from microai.tflite import tf_env

    tf, keras = tf_env.tensorflow(), tf_env.keras()
    keras.utils.set_random_seed(0)
    layers = keras.layers
    i = keras.Input((32, 32, 3), batch_size=1)
    h = layers.Conv2D(16, 3, padding="same", strides=2, activation="relu")(i)
    h = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(h)
    h = layers.Add()([h, layers.Conv2D(16, 1)(h)])
    h = layers.AveragePooling2D(2)(h)
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(i, layers.Dense(10, activation="softmax")(h))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = np.moveaxis(calibration, 1, -1).astype(np.float32)
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def model(name: str, precision: str, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """(.tflite bytes, channels-first calibration inputs) of a benchmark model: the pipeline's path
    (graph IR -> Keras -> TFLite, microai.tflite.convert) for the ResNets."""
    from microai.tflite.convert import to_tflite

    if name.startswith("resnet"):
        graph = resnet_graph(name)
        x = rng.normal(0, 1, (32, *graph.input.shape)).astype(np.float32)
        return to_tflite(graph, precision, x), x
    if name == "keras-cnn2d" and precision == "int8":
        x = rng.normal(0, 1, (32, 3, 32, 32)).astype(np.float32)
        return keras_cnn2d_tflite(x), x
    raise SystemExit(f"unknown model '{name}' (in {precision})")


def measure_c(name: str, precision: str, framework: str, graph, expected: np.ndarray, x: np.ndarray,
              workdir: Path, kernels: str) -> Row:
    """MicroAI's C of ``graph`` on qemu-m4; its raw outputs against ``expected``."""
    lib = workdir / f"{framework}-{precision}" / "lib"
    codegen.convert(graph, lib, kernels=kernels)
    board = get_board("qemu-m4")
    build = board.build(lib, codegen.pack_input(graph, x), lib.parent / "build")
    run = board.run(build, timeout=600)
    est = estimate(build.elf, timeout=600)
    ram = build.data + build.bss + int(est.stack_bytes_used)
    cycles = int(est.cycles.max())
    return Row(name, precision, f"{framework} ({kernels})", graph.macs(), build.rom_bytes, ram, cycles,
               round(cycles / graph.macs(), 2),
               bool(np.array_equal(run.outputs.reshape(len(x), -1), expected.reshape(len(x), -1))))


def measure_microai(name: str, precision: str, tflite: Path, x: np.ndarray, workdir: Path,
                    kernels: str) -> Row:
    """The .tflite imported into MicroAI; checked against the TFLM host runtime."""
    return measure_c(name, precision, "microai", from_tflite(tflite, name), run_tflm(tflite, x).outputs, x,
                     workdir, kernels)


def measure_pow2(name: str, precision: str, calibration: np.ndarray, x: np.ndarray, workdir: Path,
                 kernels: str) -> Row:
    """MicroAI's own paper-scheme PTQ of the same float ResNet; checked against the reference executor."""
    from microai.quant import reference
    from microai.quant.ptq import quantize_ptq

    graph = resnet_graph(name)
    graph = (quantize_ptq(graph, calibration, 16, "network", fixed_frac=9) if precision == "int16"
             else quantize_ptq(graph, calibration, 8, "layer"))
    return measure_c(name, precision, "microai pow2", graph, reference.run(graph, x), x, workdir, kernels)


def measure_tflm(name: str, precision: str, tflite: Path, x: np.ndarray, workdir: Path, macs: int,
                 tflm: tuple) -> Row:
    from microai.deploy.tflm.measure import arena_ram_bytes, measure_tflite

    m = measure_tflite(tflite, x, *tflm, workdir / f"tflm-{precision}")
    ram = arena_ram_bytes(m.build.data, m.build.bss, int(m.estimate.stack_bytes_used), m.run.arena_bytes)
    cycles = int(m.estimate.cycles.max())
    return Row(name, precision, "tflite-micro + cmsis-nn", macs, m.build.rom_bytes, ram, cycles,
               round(cycles / macs, 2), bool(m.matches.all()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet1d-f16", "resnet1d-f80", "resnet2d-f16",
                                                         "keras-cnn2d"])
    parser.add_argument("--precisions", nargs="+", choices=("int8", "int16x8"), default=["int8"])
    parser.add_argument("--pow2", action="store_true", help="also MicroAI's paper-scheme int8 and int16 PTQ")
    parser.add_argument("--kernels", choices=("optimized", "reference"), default="optimized")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    tflm = tflm_setup()
    rows: list[Row] = []
    print(f"{'model':>14} {'precision':>9} {'framework':>28} {'MACs':>9} {'ROM B':>7} {'RAM B':>7} "
          f"{'est. cycles':>11} {'cyc/MAC':>7} {'exact':>5}")

    def show(r: Row) -> None:
        rows.append(r)
        exact = "yes" if r.outputs_match_tflm_host else "NO"
        print(f"{r.model:>14} {r.precision:>9} {r.framework:>28} {r.macs:>9} {r.rom_bytes:>7} "
              f"{r.ram_bytes:>7} {r.est_cycles:>11} {r.cycles_per_mac:>7} {exact:>5}", flush=True)

    with tempfile.TemporaryDirectory(prefix="microai-tflite-engine-") as tmp:
        for name in args.models:
            for precision in args.precisions:
                if precision != "int8" and not name.startswith("resnet"):
                    continue
                data, x = model(name, precision, np.random.default_rng(0))
                workdir = Path(tmp) / name
                workdir.mkdir(exist_ok=True)
                tflite = workdir / f"{precision}.tflite"
                tflite.write_bytes(data)
                ours = measure_microai(name, precision, tflite, x[:VECTORS], workdir, args.kernels)
                show(ours)
                try:
                    theirs = measure_tflm(name, precision, tflite, x[:VECTORS], workdir, ours.macs, tflm)
                except DeployError as e:  # e.g. a kernel CMSIS-NN lacks: the row says why, the rest goes on
                    print(f"{name:>14} {precision:>9} {'tflite-micro + cmsis-nn':>28} unavailable: "
                          f"{str(e).splitlines()[-1][-300:]}", flush=True)
                    continue
                show(theirs)
                print(f"{'':>14} {'':>9} {'ratio MicroAI / TFLM':>28} cycles "
                      f"{ours.est_cycles / theirs.est_cycles:.2f}, "
                      f"ROM {ours.rom_bytes / theirs.rom_bytes:.2f}, "
                      f"RAM {ours.ram_bytes / theirs.ram_bytes:.2f}", flush=True)
            if args.pow2 and name.startswith("resnet"):
                for precision in ("int8", "int16"):
                    show(measure_pow2(name, precision, x, x[:VECTORS], Path(tmp) / name, args.kernels))
    from microai.deploy.timing import TimingModel

    print(f"qemu-m4 (emulated), {VECTORS} test vectors; exact: raw outputs equal to the TFLM host runtime's "
          f"(microai pow2: to the reference executor's); cycles estimated: {TimingModel().describe()}; "
          f"RAM = data + bss + stack high-water mark (TFLM: tensor arena at its used bytes)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0 if all(r.outputs_match_tflm_host for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
