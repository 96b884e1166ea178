"""Training throughput of ResNetv1-6: float and QAT (MicroAI, PyTorch) against Keras/TensorFlow float.

For each input shape -- 1D UCI-HAR (9 x 128, 6 classes) and 2D GTSRB (3 x 32 x 32, 43 classes), with
the batch sizes and shard counts of config/paper.yaml (the paper's: float 64 / QAT 64 and float 128 /
QAT 512) -- and each thread count, it trains over random data and prints the samples per second of
an epoch in a run of several (start-up excluded, see ``_steady_rate``; the best of ``--rounds``
interleaved rounds), for MicroAI float training, MicroAI QAT (int8, per-layer) and Keras float
training of the same network (same layers, parameter count checked, SGD with momentum 0.9 and weight
decay, same batch size, TensorFlow limited to the same thread count). Keras runs in a subprocess of
this script, side by side in the same run. Each measurement runs on as many CPUs as it has threads
(the first ones this process may use, set by CPU affinity, as a cluster job with that many CPUs is
held to them): TensorFlow's input pipeline and runtime have threads of their own, which would
otherwise take part of another CPU (``--no-pin`` lets them). Figures are measured on this host:
``--clock wall`` (default) is the throughput, in which other load on the machine shows; ``--clock
cpu`` counts the CPU time of the training process (all its threads) and of its worker processes,
which other load hardly changes: a comparison of efficiency, not a throughput. Beside the ratios of
the best rates, ``paired`` columns give the median over the rounds of each round's own ratio (QAT and
float epochs measured one after the other, Keras's right after them): a burst of load on the host that
slows one measurement of one round moves the median less than it moves a best-of ratio.

    .venv/bin/python benchmarks/training_speed.py --threads 1 2
    .venv/bin/python benchmarks/training_speed.py --threads 1 --clock cpu
    .venv/bin/python benchmarks/training_speed.py --filters 80 --samples 1024 --json speed.json

Targets (issue 10): QAT epoch <= 1.5 x the float epoch (ratio = float samples/s / QAT samples/s);
MicroAI float >= Keras float.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

#: case -> (input shape, classes, dataset whose schedules in config/paper.yaml give batch sizes and shards)
CASES = {
    "1d-uci-har": ((9, 128), 6, "uci-har"),
    "2d-gtsrb": ((3, 32, 32), 43, "gtsrb"),
}
PAPER = Path(__file__).resolve().parent.parent / "config" / "paper.yaml"
def _cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (training's worker processes stop when
    train() returns; a Keras measurement runs in a process of its own)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


CLOCKS = {"wall": time.perf_counter, "cpu": _cpu_seconds}


def cpu_set(threads: int) -> set[int]:
    """The first ``threads`` CPUs this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        raise SystemExit(f"--threads {threads}: this process may use {len(allowed)} CPUs ({allowed})")
    return set(allowed[:threads])


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """This process (and the worker processes it starts) on ``cpus`` (None: unchanged) for the block."""
    before = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@dataclass(frozen=True)
class Schedule:
    batch: int
    shards: int


def schedules(case: str) -> tuple[Schedule, Schedule]:
    """(float, QAT) batch size and shards of the case's dataset in config/paper.yaml."""
    from microai.config import load_params
    from microai.train.config import DEFAULT_SHARDS

    params = load_params(PAPER)
    dataset = CASES[case][2]
    sections = (params[kind][dataset] for kind in ("train", "qat"))
    return tuple(Schedule(s["batch_size"], s.get("shards", DEFAULT_SHARDS)) for s in sections)


@dataclass
class Row:
    case: str
    filters: int
    clock: str
    threads: int
    #: CPUs the measurements were held to (None: any)
    cpus: list[int] | None
    float_batch: int
    float_shards: int
    qat_batch: int
    qat_shards: int
    float_samples_per_s: float
    qat_samples_per_s: float
    keras_samples_per_s: float | None
    #: the median over the rounds of each round's QAT epoch time / float epoch time
    paired_qat_ratio: float
    #: the median over the rounds of each round's MicroAI float rate / Keras float rate
    paired_keras_ratio: float | None

    @property
    def qat_ratio(self) -> float:
        """QAT epoch time / float epoch time (of the best rates)."""
        return self.float_samples_per_s / self.qat_samples_per_s


def _data(shape: tuple[int, ...], classes: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n)


def _steady_rate(run: Callable[[int], object], samples: int, repeats: int, clock: str,
                 warm: int = 1) -> float:
    """Samples per second (of ``clock``) of the epochs after the first ``warm`` in ``run(warm + repeats)``,
    which trains that many epochs in one call: ``repeats * samples / (T(warm + repeats) - T(warm))``, where
    each ``T`` is the shortest of 2 calls. Start-up (worker processes forked, the schedule trial of
    MicroAI's first steps, Keras' training function traced, caches warmed) is in both ``T`` and cancels
    out, as it does in a run of the paper's 120-300 epochs."""
    def timed(epochs: int) -> float:
        began = CLOCKS[clock]()
        run(epochs)
        return CLOCKS[clock]() - began

    first, longer = math.inf, math.inf
    for _ in range(2):
        first, longer = min(first, timed(warm)), min(longer, timed(warm + repeats))
    return repeats * samples / (longer - first)


def _epoch_rate(model, x: np.ndarray, y: np.ndarray, schedule: Schedule, threads: int, repeats: int,
                clock: str) -> float:
    """Steady samples per second of microai.train.train (see _steady_rate), after the epochs that hold
    the steps of the schedule trial (microai.train.parallel.ScheduleTrial)."""
    from microai.train import TrainConfig, train
    from microai.train.parallel import ScheduleTrial

    # a trial with more than one thread
    warm = 1 if threads == 1 else math.ceil(ScheduleTrial().length / math.ceil(len(x) / schedule.batch))

    def run(epochs: int) -> None:
        cfg = TrainConfig(epochs=epochs, batch_size=schedule.batch, lr=0.005, milestones=[], gamma=0.1,
                          mixup_alpha=0.0, shards=schedule.shards, num_threads=threads)
        train(model, x, y, cfg, seed=0, progress=False)

    return _steady_rate(run, len(x), repeats, clock, warm)


def microai_rates(case: str, filters: int, samples: int, threads: int, repeats: int,
                  clock: str) -> tuple[float, float]:
    """(float, QAT) samples per second of MicroAI's training of ResNetv1-6."""
    import torch

    from microai.models import build_model
    from microai.quant.qat import calibrate, prepare_qat

    shape, classes, _ = CASES[case]
    float_schedule, qat_schedule = schedules(case)
    x, y = _data(shape, classes, _multiple(samples, max(float_schedule.batch, qat_schedule.batch)))
    torch.manual_seed(0)
    model = build_model("resnetv1-6", shape, classes, filters)
    float_rate = _epoch_rate(model, x, y, float_schedule, threads, repeats, clock)
    qat = prepare_qat(model, 8)
    calibrate(qat, x, seed=0)
    return float_rate, _epoch_rate(qat, x, y, qat_schedule, threads, repeats, clock)


def _multiple(n: int, batch: int) -> int:
    return max(batch, n // batch * batch)


def keras_model(shape: tuple[int, ...], classes: int, filters: int):
    """The paper's ResNetv1-6 in Keras (channels last), the same layers as microai.models.resnet."""
    import keras
    from keras import layers

    two_d = len(shape) == 3
    conv = layers.Conv2D if two_d else layers.Conv1D
    pool = layers.MaxPooling2D if two_d else layers.MaxPooling1D
    spatial = shape[1:]
    inputs = keras.Input((*spatial, shape[0]))
    x = layers.ReLU()(conv(filters, 3, padding="same")(inputs))
    body = conv(filters, 3, padding="same")(x)
    body = conv(filters, 3, padding="same")(layers.ReLU()(pool(2)(body)))
    skip = pool(2)(conv(filters, 1)(x))
    x = layers.ReLU()(layers.Add()([body, skip]))
    body = conv(filters, 3, padding="same")(layers.ReLU()(conv(filters, 3, padding="same")(x)))
    x = layers.ReLU()(layers.Add()([body, x]))
    x = layers.Flatten()(pool(tuple(s // 2 for s in spatial) if two_d else spatial[0] // 2)(x))
    return keras.Model(inputs, layers.Dense(classes)(x))


def keras_rate(case: str, filters: int, samples: int, threads: int, repeats: int, clock: str) -> float:
    """Keras float samples per second (run in this process: call it from a fresh interpreter)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from microai.models import build_model

    shape, classes, _ = CASES[case]
    batch = schedules(case)[0].batch
    model = keras_model(shape, classes, filters)
    reference = sum(p.numel() for p in build_model("resnetv1-6", shape, classes, filters).parameters())
    if model.count_params() != reference:
        raise RuntimeError(f"Keras model has {model.count_params()} parameters, MicroAI's {reference}")
    model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9, weight_decay=5e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data(shape, classes, _multiple(samples, batch))
    x = np.moveaxis(x, 1, -1).copy()  # channels last
    return _steady_rate(lambda epochs: model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0,
                                                 shuffle=True), len(x), repeats, clock)


def keras_subprocess(case: str, filters: int, samples: int, threads: int, repeats: int,
                     clock: str, cpus: set[int] | None) -> float | None:
    """keras_rate in a fresh interpreter (TensorFlow's thread pools are fixed once it starts), on
    ``cpus`` (None: any)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, __file__, "--keras-worker", case, "--filters", str(filters), "--samples",
           str(samples), "--threads", str(threads), "--repeats", str(repeats), "--clock", clock]
    with pinned(cpus):  # the child inherits the affinity
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        print(f"Keras measurement failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    p.add_argument("--filters", type=int, default=16, help="F of ResNetv1-6 (paper: 16..80)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--samples", type=int, default=3072, help="training examples per measured epoch")
    p.add_argument("--repeats", type=int, default=3, help="measured epochs (after the first) of a run")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds of MicroAI and Keras measurements; the best of each is printed")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall: throughput; cpu: CPU time of the training process and its workers "
                        "(insensitive to other load)")
    p.add_argument("--no-pin", action="store_true",
                   help="let each measurement run on any CPU (TensorFlow's own threads then take part of "
                        "another CPU)")
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--keras-worker", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.keras_worker:
        print(keras_rate(args.keras_worker, args.filters, args.samples, args.threads[0], args.repeats,
                         args.clock))
        return
    rows = []
    unit = "samples/s (wall clock)" if args.clock == "wall" else "samples per CPU-second (training processes)"
    print(f"ResNetv1-6 F={args.filters}, {args.samples} random examples per epoch, the {args.repeats} epochs "
          f"after start-up in a run, best of {args.rounds} interleaved rounds, on this host "
          f"({os.cpu_count()} CPUs), {unit}; batch/shards from {PAPER.name}; "
          f"{'any CPU' if args.no_pin else 'pinned to as many CPUs as threads'}")
    print(f"{'case':<11} {'thr':>3} {'float b/s':>9} {'QAT b/s':>8} {'float':>7} {'QAT':>7} "
          f"{'QAT/float epoch':>15} {'paired':>6} {'Keras float':>11} {'MicroAI/Keras':>13} {'paired':>6}")
    for case in args.cases:
        fs, qs = schedules(case)
        for threads in args.threads:
            cpus = None if args.no_pin else cpu_set(threads)
            rounds, keras_rounds = [], []
            for _ in range(args.rounds):  # interleaved: a burst of load on the host hits one round
                with pinned(cpus):
                    rounds.append(microai_rates(case, args.filters, args.samples, threads, args.repeats,
                                                args.clock))
                if not args.no_keras:
                    keras_rounds.append(keras_subprocess(case, args.filters, args.samples, threads,
                                                         args.repeats, args.clock, cpus))
            float_rate, qat_rate = (max(rates) for rates in zip(*rounds, strict=True))
            keras = None if not keras_rounds or None in keras_rounds else max(keras_rounds)
            paired_keras = None if keras is None else statistics.median(
                f / k for (f, _), k in zip(rounds, keras_rounds, strict=True))
            row = Row(case, args.filters, args.clock, threads, None if cpus is None else sorted(cpus),
                      fs.batch, fs.shards, qs.batch, qs.shards, float_rate, qat_rate, keras,
                      statistics.median(f / q for f, q in rounds), paired_keras)
            rows.append(row)
            versus = f"{float_rate / keras:13.2f} {paired_keras:6.2f}" if keras else f"{'-':>13} {'-':>6}"
            keras_text = f"{keras:11.0f}" if keras else f"{'-':>11}"
            print(f"{case:<11} {threads:>3} {f'{fs.batch}/{fs.shards}':>9} {f'{qs.batch}/{qs.shards}':>8} "
                  f"{float_rate:7.0f} {qat_rate:7.0f} {row.qat_ratio:15.2f} {row.paired_qat_ratio:6.2f} "
                  f"{keras_text} {versus}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**asdict(r), "qat_ratio": r.qat_ratio} for r in rows], f, indent=1)


if __name__ == "__main__":
    main()
