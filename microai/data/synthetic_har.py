"""``synthetic-har``: a generated activity dataset with exactly UCI-HAR's shape (the offline default).

Windows are 9 channels x 128 samples (50 Hz, 2.56 s) in UCI-HAR's channel order: body_acc x/y/z
(g, gravity removed), body_gyro x/y/z (rad/s), total_acc x/y/z (g). Six classes with UCI-HAR's
activity names and class frequencies. The device frame follows a waist-worn phone: x points up
(total_acc_x is about +1 g when upright), y left, z forward.

The model behind the signals:

* Walking, upstairs and downstairs are periodic gaits: a vertical bounce at the step frequency
  with harmonics (impact sharpness), forward surge at the step frequency, lateral sway and
  pelvis rotations at the stride frequency (half the step frequency), a forward trunk lean, and
  step-to-step timing jitter. The three gaits differ only by overlapping ranges of cadence,
  amplitude, harmonic content, lean and gyro intensity, so they are easy to confuse.
* Sitting, standing and laying are static postures: gravity orientation (trunk pitch and roll)
  plus postural sway and occasional fidgets. Sitting and standing differ by a few degrees of
  pitch, which overlaps across subjects; laying tilts gravity onto the z/y axes.
* Each subject has its own gain, cadence, stair style, posture angles, device mounting rotation,
  gyro bias and noise level; test subjects are disjoint from training subjects, so a model must
  generalize across people. Sensors add white noise, a slow bias drift and quantization-free
  float output.

Everything is drawn from ``numpy.random.default_rng`` streams seeded by ``seed`` (train and test
use separate child streams, so changing ``n_test`` leaves the training set unchanged).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microai.data.errors import DatasetError
from microai.data.prepared import RawSplits
from microai.data.spec import DatasetSpec

SAMPLE_RATE_HZ = 50.0
WINDOW = 128
CLASS_NAMES = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]
CHANNELS = [f"{group}_{axis}" for group in ("body_acc", "body_gyro", "total_acc") for axis in "xyz"]
#: UCI-HAR training-set class counts, used as class frequencies.
_CLASS_COUNTS = np.array([1226, 1073, 986, 1286, 1374, 1407], dtype=np.float64)
_WALK, _UP, _DOWN, _SIT, _STAND, _LAY = range(6)

# Gait parameters per gait class (walking, upstairs, downstairs): mean and per-window spread.
_CADENCE_RATIO = np.array([1.00, 0.90, 1.08])      # x subject cadence (steps/s)
_BOUNCE_G = np.array([0.30, 0.27, 0.36])           # vertical acceleration amplitude
_HARMONIC2 = np.array([0.35, 0.28, 0.45])          # impact sharpness: 2nd / 3rd harmonic ratio
_HARMONIC3 = np.array([0.12, 0.08, 0.22])
_SURGE_RATIO = np.array([0.50, 0.62, 0.46])        # forward / vertical amplitude
_PITCH_GYRO = np.array([0.22, 0.32, 0.28])         # rad/s at the step frequency
_LEAN_DEG = np.array([6.0, 11.0, 3.0])             # forward trunk lean


def _options_checked(options: dict[str, Any]) -> None:
    for key in ("n_train", "n_test", "train_subjects", "test_subjects"):
        if options[key] < 1:
            raise DatasetError(f"datasets.synthetic-har.{key} must be >= 1, got {options[key]}")


def _rotation(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations: yaw about x (vertical), pitch about y (lateral), roll about z (forward)."""
    cr, sr = np.cos(roll), np.sin(roll)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    one, zero = np.ones_like(roll), np.zeros_like(roll)
    about_x = np.stack([one, zero, zero, zero, cy, -sy, zero, sy, cy], axis=-1).reshape(-1, 3, 3)
    about_y = np.stack([cp, zero, -sp, zero, one, zero, sp, zero, cp], axis=-1).reshape(-1, 3, 3)
    about_z = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], axis=-1).reshape(-1, 3, 3)
    return about_x @ about_y @ about_z


def _subjects(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    deg = np.pi / 180
    return {
        "gain": rng.uniform(0.75, 1.25, count),
        "cadence": rng.normal(1.85, 0.13, count),
        "stairs_up": rng.normal(0.0, 0.05, count),      # personal shift of the upstairs cadence ratio
        "stairs_down": rng.normal(0.0, 0.05, count),
        "sit_pitch": rng.normal(20.0, 6.0, count) * deg,
        "stand_pitch": rng.normal(9.0, 5.0, count) * deg,
        "mount": rng.normal(0.0, 8.0, (count, 3)) * deg,  # device mounting roll/pitch/yaw
        "gyro_bias": rng.normal(0.0, 0.015, (count, 3)),
        "acc_noise": rng.uniform(0.006, 0.02, count),
        "gyro_noise": rng.uniform(0.01, 0.04, count),
    }


def _gait(rng: np.random.Generator, gait: np.ndarray, subj: dict[str, np.ndarray], who: np.ndarray,
          t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body-frame acceleration (N,3,L), angular velocity (N,3,L) and trunk pitch (N,) of gait windows."""
    n = gait.size

    def jitter(base: np.ndarray, spread: float) -> np.ndarray:
        return base[gait] * rng.uniform(1 - spread, 1 + spread, n)

    personal = np.select([gait == 1, gait == 2], [subj["stairs_up"][who], subj["stairs_down"][who]], 0.0)
    cadence = subj["cadence"][who] * (_CADENCE_RATIO[gait] + personal) * rng.uniform(0.93, 1.07, n)
    gain = subj["gain"][who]
    # Step-to-step timing jitter: the phase wanders as a random walk around the nominal cadence.
    wander = np.cumsum(rng.normal(0.0, 0.05, (n, t.size)), axis=1)
    phase = 2 * np.pi * cadence[:, None] * t + rng.uniform(0, 2 * np.pi, n)[:, None] + wander
    bounce = gain * jitter(_BOUNCE_G, 0.2)
    h2, h3 = jitter(_HARMONIC2, 0.3), jitter(_HARMONIC3, 0.4)
    d2, d3 = rng.uniform(-0.6, 0.6, (2, n))
    vertical = bounce[:, None] * (np.sin(phase) + h2[:, None] * np.sin(2 * phase + d2[:, None])
                                  + h3[:, None] * np.sin(3 * phase + d3[:, None]))
    surge = (bounce * jitter(_SURGE_RATIO, 0.25))[:, None] * np.sin(phase + rng.uniform(0.8, 2.0, n)[:, None])
    stride = phase / 2
    lateral = (0.35 * bounce * rng.uniform(0.7, 1.3, n))[:, None] * np.sin(stride)
    acc = np.stack([vertical, lateral, surge], axis=1)
    pitch_rate = (gain * jitter(_PITCH_GYRO, 0.3))[:, None] * np.sin(phase + rng.uniform(0, 1, n)[:, None])
    yaw_rate = (0.30 * gain * rng.uniform(0.7, 1.3, n))[:, None] * np.sin(stride + 0.5)
    roll_phase = rng.uniform(0, 1, n)[:, None]
    roll_rate = (0.20 * gain * rng.uniform(0.7, 1.3, n))[:, None] * np.sin(stride + roll_phase)
    gyro = np.stack([yaw_rate, pitch_rate, roll_rate], axis=1)
    lean = jitter(_LEAN_DEG, 0.5) * np.pi / 180
    return acc, gyro, lean


def _lowpass_noise(rng: np.random.Generator, shape: tuple[int, ...], cutoff_hz: float) -> np.ndarray:
    """Zero-mean, unit-variance noise band-limited to ``cutoff_hz`` (FFT mask), for postural sway."""
    spectrum = np.fft.rfft(rng.normal(size=shape), axis=-1)
    freqs = np.fft.rfftfreq(shape[-1], 1 / SAMPLE_RATE_HZ)
    spectrum[..., (freqs > cutoff_hz) | (freqs == 0)] = 0
    out = np.fft.irfft(spectrum, n=shape[-1], axis=-1)
    return out / np.maximum(out.std(axis=-1, keepdims=True), 1e-12)


def _posture(rng: np.random.Generator, labels: np.ndarray, subj: dict[str, np.ndarray], who: np.ndarray,
             t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Body-frame sway acceleration, angular velocity, trunk pitch and roll of static windows."""
    n = labels.size
    deg = np.pi / 180
    pitch = np.select(
        [labels == _SIT, labels == _STAND],
        [subj["sit_pitch"][who], subj["stand_pitch"][who]],
        rng.normal(88.0, 8.0, n) * deg,
    ) + rng.normal(0.0, 4.0, n) * deg
    roll = np.where(labels == _LAY, rng.uniform(-50.0, 50.0, n), rng.normal(0.0, 4.0, n)) * deg
    sway_g = np.select([labels == _STAND, labels == _SIT], [0.018, 0.010], 0.006) * rng.uniform(0.5, 1.5, n)
    acc = sway_g[:, None, None] * _lowpass_noise(rng, (n, 3, t.size), 1.5)
    gyro = 2.0 * sway_g[:, None, None] * _lowpass_noise(rng, (n, 3, t.size), 1.5)
    # Fidgets: a short burst of 2-5 Hz motion in about a quarter of the windows.
    fidget = rng.random(n) < 0.25
    centre = rng.uniform(0.3, 2.3, n)
    envelope = np.exp(-0.5 * ((t - centre[:, None]) / rng.uniform(0.1, 0.35, n)[:, None]) ** 2)
    burst = envelope * np.sin(2 * np.pi * rng.uniform(2.0, 5.0, n)[:, None] * t)
    amp = fidget * rng.uniform(0.04, 0.15, n)
    acc += (amp[:, None] * burst)[:, None, :] * rng.normal(0, 1, (n, 3, 1))
    gyro += (2.5 * amp[:, None] * burst)[:, None, :] * rng.normal(0, 1, (n, 3, 1))
    return acc, gyro, pitch, roll


def _windows(rng: np.random.Generator, labels: np.ndarray, who: np.ndarray,
             subj: dict[str, np.ndarray]) -> np.ndarray:
    n = labels.size
    t = np.arange(WINDOW) / SAMPLE_RATE_HZ
    acc = np.zeros((n, 3, WINDOW))
    gyro = np.zeros((n, 3, WINDOW))
    pitch = np.zeros(n)
    roll = rng.normal(0.0, 3.0, n) * np.pi / 180
    moving = labels <= _DOWN
    acc[moving], gyro[moving], pitch[moving] = _gait(rng, labels[moving], subj, who[moving], t)
    still = ~moving
    acc[still], gyro[still], pitch[still], roll[still] = _posture(rng, labels[still], subj, who[still], t)
    # Gravity in the body frame for the trunk orientation, then the device mounting rotation.
    gravity = np.stack([np.cos(pitch) * np.cos(roll), np.sin(roll), np.sin(pitch) * np.cos(roll)], axis=1)
    mount = subj["mount"][who] + rng.normal(0.0, 2.0, (n, 3)) * np.pi / 180
    rotation = _rotation(mount[:, 0], mount[:, 1], mount[:, 2])
    body_acc = rotation @ acc
    body_gyro = rotation @ gyro + subj["gyro_bias"][who][:, :, None]
    # Accelerometer bias: an offset plus a linear drift across the window.
    ramp = np.linspace(-0.5, 0.5, WINDOW)
    drift = rng.normal(0.0, 0.01, (n, 3, 1)) + rng.normal(0.0, 0.02, (n, 3, 1)) * ramp
    total_acc = body_acc + (rotation @ gravity[:, :, None]) + drift
    acc_noise = subj["acc_noise"][who][:, None, None]
    gyro_noise = subj["gyro_noise"][who][:, None, None]
    x = np.concatenate([
        body_acc + acc_noise * rng.normal(size=body_acc.shape),
        body_gyro + gyro_noise * rng.normal(size=body_gyro.shape),
        total_acc + acc_noise * rng.normal(size=total_acc.shape),
    ], axis=1)
    return x.astype(np.float32)


def _split(seed_seq: np.random.SeedSequence, count: int, subject_ids: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed_seq)
    subj = _subjects(rng, subject_ids.size)
    labels = rng.choice(len(CLASS_NAMES), size=count, p=_CLASS_COUNTS / _CLASS_COUNTS.sum())
    who = rng.integers(0, subject_ids.size, count)
    return _windows(rng, labels, who, subj), labels.astype(np.int64), subject_ids[who]


def generate(seed: int, n_train: int, n_test: int, train_subjects: int, test_subjects: int) -> RawSplits:
    """The synthetic train/test split (unnormalized) for these generator options."""
    options = {"seed": seed, "n_train": n_train, "n_test": n_test,
               "train_subjects": train_subjects, "test_subjects": test_subjects}
    _options_checked(options)
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    train_ids = np.arange(1, train_subjects + 1)
    test_ids = np.arange(train_subjects + 1, train_subjects + test_subjects + 1)
    x_train, y_train, s_train = _split(train_seq, n_train, train_ids)
    x_test, y_test, s_test = _split(test_seq, n_test, test_ids)
    return RawSplits(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=list(CLASS_NAMES),
        preprocessing={"channels": CHANNELS, "sample_rate_hz": SAMPLE_RATE_HZ, "window": WINDOW,
                       "units": "acc in g, gyro in rad/s", "generator": "microai.data.synthetic_har"},
        subjects_train=s_train, subjects_test=s_test,
    )


def _build(options: dict[str, Any], files: dict[str, Path]) -> RawSplits:
    return generate(**options)


SPEC = DatasetSpec(
    name="synthetic-har",
    description="generated UCI-HAR-shaped activity windows (9 x 128, 6 classes), subject-disjoint split",
    files=(),
    options={"seed": 0, "n_train": 7352, "n_test": 2947, "train_subjects": 21, "test_subjects": 9},
    build=_build,
    synthetic=True,
)
