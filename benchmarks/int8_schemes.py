"""Accuracy of every integer scheme against float on the same trained model: the paper's power-of-two int8
(QAT, PTQ with the new round-to-nearest default and with the paper's floor/truncation), int16, TFLite's
scheme in MicroAI (int8-tflite PTQ, int8-tflite-qat, int16x8) and TFLite's own int8 PTQ (TensorFlow's
converter, run by the TFLM host runtime), all on whole test sets.

Datasets:

* ``fsdd``: the Free Spoken Digit Dataset (real recordings; default: ../shared/datasets/fsdd's archive),
  12 MFCC + energy x 39 frames, with ONE SPEAKER HELD OUT as the test set (``--speaker``, all of their
  recordings) and the other speakers' recordings as the training set: the pipeline's
  ``datasets.fsdd.split: speaker:<name>`` split (its official split is at ceiling).
* ``gtsrb-shape``: 3 x 32 x 32 images of 43 classes generated here (a seeded textured pattern per class,
  randomly shifted, scaled in brightness and noised): the GTSRB shape for the 2D ResNetv1-6, no data
  needed. ``--gtsrb-npz`` replaces it by a prepared real GTSRB (``data/prepared/gtsrb.npz`` of the
  pipeline, made from a local copy of the official archives).

The float model is ResNetv1-6 (F filters) trained by the pipeline's training loop; quantized variants are
evaluated by the integer reference executor (bit-exact with the generated C); TFLite's own int8 model by the
TFLM host runtime. Drops are in accuracy points (percent) against the float model on the same test set.

    .venv/bin/python benchmarks/int8_schemes.py --datasets fsdd gtsrb-shape --json results/int8_schemes.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from microai.data.prepared import channel_statistics, standardize
from microai.graph.torch_import import from_torch
from microai.models import build_model
from microai.quant import reference
from microai.quant.affine import quantize_tflite
from microai.quant.affine_qat import train_qat_tflite
from microai.quant.ptq import quantize_ptq
from microai.quant.qat import export_qat, train_qat
from microai.tflite import runtime
from microai.tflite.convert import representative_samples, to_tflite
from microai.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
FSDD_ARCHIVE = ROOT.parent / "shared" / "datasets" / "fsdd" / "free-spoken-digit-dataset_26eb9aa.zip"
DATASETS = ("fsdd", "gtsrb-shape")
CALIBRATION = 1000  # representative samples, as the pipeline's frameworks.tflite-micro.representative_samples


def fsdd(archive: Path, speaker: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """FSDD in the pipeline's ``datasets.fsdd.split: speaker:<speaker>`` split, z-scored with the training
    set's channel statistics as the pipeline's prepare stage does."""
    from microai.data.fsdd import SPEC, load

    raw = load(archive, **{**SPEC.options, "split": f"speaker:{speaker}"})
    mean, std = channel_statistics(raw.x_train)
    return (standardize(raw.x_train, mean, std), raw.y_train, standardize(raw.x_test, mean, std), raw.y_test,
            f"FSDD, speaker '{speaker}' held out ({len(raw.y_test)} test / {len(raw.y_train)} training "
            "recordings)")


def gtsrb_shape(seed: int = 0, n_train: int = 6450, n_test: int = 2150
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Generated 3 x 32 x 32 images of 43 classes: a smooth random colour pattern per class, shifted by up to
    3 pixels, brightness x [0.6, 1.4], Gaussian noise (sigma 0.35 of the pattern's spread)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 1, (43, 3, 8, 8))
    templates = np.kron(coarse, np.ones((1, 1, 5, 5)))[:, :, 4:36, 4:36]  # 40 -> 32 px, blocky patterns

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 43, n)
        shifts = rng.integers(-3, 4, (n, 2))
        x = np.stack([np.roll(templates[c], tuple(s), axis=(1, 2)) for c, s in zip(y, shifts, strict=True)])
        x = x * rng.uniform(0.6, 1.4, (n, 1, 1, 1)) + rng.normal(0, 0.35, x.shape)
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    mean, std = channel_statistics(x_train)
    return (standardize(x_train, mean, std), y_train, standardize(x_test, mean, std), y_test,
            f"GTSRB shape (generated: 43 classes, {n_train} training / {n_test} test images)")


def gtsrb_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    from microai.data import load_prepared

    d = load_prepared(path)
    return d.x_train, d.y_train, d.x_test, d.y_test, f"GTSRB ({path}, official split)"


def schedules(dataset: str, epochs: int, qat_epochs: int) -> tuple[TrainConfig, TrainConfig]:
    lr = 0.05 if dataset == "fsdd" else 0.01
    base = {"batch_size": 64, "momentum": 0.9, "weight_decay": 5e-4, "gamma": 0.1}
    float_cfg = TrainConfig.from_dict({**base, "epochs": epochs, "lr": lr, "mixup_alpha": 0.2,
                                       "milestones": [epochs // 2, 3 * epochs // 4]})
    qat_cfg = TrainConfig.from_dict({**base, "epochs": qat_epochs, "lr": lr / 10, "mixup_alpha": 0.0,
                                     "milestones": [qat_epochs // 2 or 1]})
    return float_cfg, qat_cfg


def run(dataset: str, data: tuple, filters: int, seed: int, float_cfg: TrainConfig, qat_cfg: TrainConfig,
        qat: bool) -> dict[str, float]:
    """Accuracy (%) of every precision on the test set for one trained float model."""
    x_train, y_train, x_test, y_test = data
    shape = tuple(x_train.shape[1:])
    classes = int(max(y_train.max(), y_test.max())) + 1
    torch.manual_seed(seed)
    net = build_model("resnetv1-6", shape, classes, filters)
    train(net, x_train, y_train, float_cfg, seed, progress=False)
    net.eval()
    graph = from_torch(net, shape, f"resnetv1_6_f{filters}")
    calibration = representative_samples(x_train, CALIBRATION)
    acc = {"float32": reference.accuracy(graph, x_test, y_test)}
    acc["int16 (pow2 PTQ Q7.9, nearest)"] = reference.accuracy(
        quantize_ptq(graph, x_train, 16, "network", fixed_frac=9), x_test, y_test)
    acc["int16 (pow2 PTQ Q7.9, paper floor/trunc)"] = reference.accuracy(
        quantize_ptq(graph, x_train, 16, "network", fixed_frac=9, rounding="floor", quant_rounding="trunc"),
        x_test, y_test)
    acc["int8-ptq (pow2 per layer, nearest)"] = reference.accuracy(
        quantize_ptq(graph, x_train, 8, "layer"), x_test, y_test)
    acc["int8-ptq (pow2 per layer, paper floor/trunc)"] = reference.accuracy(
        quantize_ptq(graph, x_train, 8, "layer", rounding="floor", quant_rounding="trunc"), x_test, y_test)
    acc["int8-tflite (MicroAI PTQ, TFLite scheme)"] = reference.accuracy(
        quantize_tflite(graph, calibration), x_test, y_test)
    acc["int16x8 (MicroAI PTQ, TFLite 16x8)"] = reference.accuracy(
        quantize_tflite(graph, calibration, activations=16), x_test, y_test)
    tflite = to_tflite(graph, "int8", calibration)
    acc["tflite-micro int8 (TFLite's own PTQ, TFLM host)"] = runtime.accuracy(tflite, x_test, y_test)
    if qat:
        tflite_qat, _ = train_qat_tflite(graph, x_train, y_train, qat_cfg, seed, progress=False)
        acc["int8-tflite-qat (MicroAI QAT, TFLite scheme)"] = reference.accuracy(tflite_qat, x_test, y_test)
        paper_qat, _ = train_qat(net, x_train, y_train, qat_cfg, width=8, seed=seed, granularity="layer",
                                 rounding="floor", quant_rounding="trunc", progress=False)
        paper_graph = export_qat(paper_qat, shape, 8)
        acc["int8 (pow2 QAT, the paper's)"] = reference.accuracy(paper_graph, x_test, y_test)
    return {k: 100.0 * v for k, v in acc.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--fsdd", type=Path, default=FSDD_ARCHIVE, help="FSDD archive (zip of the repo)")
    parser.add_argument("--speaker", default="theo", help="FSDD speaker held out as the test set")
    parser.add_argument("--gtsrb-npz", type=Path, help="prepared real GTSRB instead of the generated images")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--qat-epochs", type=int, default=10)
    parser.add_argument("--no-qat", action="store_true", help="skip both QAT variants (minutes of training)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = {}
    for dataset in args.datasets:
        if dataset == "fsdd":
            *data, what = fsdd(args.fsdd, args.speaker)
        else:
            *data, what = gtsrb_npz(args.gtsrb_npz) if args.gtsrb_npz else gtsrb_shape()
        float_cfg, qat_cfg = schedules(dataset, args.epochs, args.qat_epochs)
        runs = []
        for seed in args.seeds:
            started = time.perf_counter()
            runs.append(run(dataset, tuple(data), args.filters, seed, float_cfg, qat_cfg, not args.no_qat))
            seconds = time.perf_counter() - started
            print(f"  ({dataset} seed {seed}: {seconds:.0f} s)", file=sys.stderr, flush=True)
        qat = "" if args.no_qat else f", {args.qat_epochs} QAT epochs"
        print(f"\n{what}; ResNetv1-6 F={args.filters}, {args.epochs} float epochs{qat}, seeds {args.seeds}; "
              f"whole test set")
        print(f"{'precision':<50} {'accuracy %':>11} {'drop vs float (points)':>23}")
        floats = np.array([r["float32"] for r in runs])
        table = {}
        for name in runs[0]:
            values = np.array([r[name] for r in runs])
            drops = floats - values
            table[name] = {"accuracy": values.tolist(), "drop": drops.tolist()}
            spread = f" +- {values.std(ddof=1):.2f}" if len(values) > 1 else ""
            print(f"{name:<50} {values.mean():>8.2f}{spread:<6} {drops.mean():>+14.2f}")
        report[dataset] = {"data": what, "filters": args.filters, "seeds": args.seeds, "precisions": table}
    print("\naccuracy: integer reference executor (bit-exact with MicroAI's generated C); TFLite's own "
          "model: TFLM host runtime (PyPI tflite-micro); measured on the host")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
