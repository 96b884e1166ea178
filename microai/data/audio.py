"""The paper's spoken-digit features: 12 MFCC + log energy, 50 ms windows, 25 ms hop, 39 frames.

Every utterance is centred in a fixed-length buffer (zero padding, or a centred crop when it is
longer) of ``window + (frames - 1) * hop`` samples (1 s at the defaults), framed without
centring, so every output has exactly ``frames`` frames. Features per frame, channels-first:
row 0 is the natural log of the frame energy (sum of squares of the raw samples, floored at
1e-10), rows 1..12 are MFCC 1..12 from librosa (Hann window of the frame length, 40 mel bands;
MFCC 0 is replaced by the energy row).
"""

from __future__ import annotations

import io

import librosa
import numpy as np
import soundfile

from microai.data.errors import DatasetError

N_MFCC = 12
N_MELS = 40
ENERGY_FLOOR = 1e-10


def read_wav(data: bytes, label: str, sample_rate: int) -> np.ndarray:
    """Decode a WAV to float32 mono at ``sample_rate`` (channels averaged, resampled with soxr if needed)."""
    try:
        signal, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
        raise DatasetError(f"{label}: not a readable WAV file: {exc}") from exc
    if signal.shape[0] == 0:
        raise DatasetError(f"{label}: WAV file has no samples")
    mono = signal.mean(axis=1)
    if rate != sample_rate:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return mono.astype(np.float32)


def frame_geometry(sample_rate: int, window_ms: float, hop_ms: float, frames: int) -> tuple[int, int, int]:
    """(window, hop, buffer length) in samples."""
    window = round(sample_rate * window_ms / 1000)
    hop = round(sample_rate * hop_ms / 1000)
    if window < 16 or hop < 1 or frames < 1:
        raise DatasetError(
            f"audio framing too small: window {window} samples, hop {hop}, frames {frames} "
            f"at {sample_rate} Hz"
        )
    return window, hop, window + (frames - 1) * hop


def fit_length(signal: np.ndarray, length: int) -> np.ndarray:
    """Centre ``signal`` in ``length`` samples: symmetric zero padding or a centred crop."""
    if signal.size >= length:
        start = (signal.size - length) // 2
        return signal[start:start + length]
    before = (length - signal.size) // 2
    return np.pad(signal, (before, length - signal.size - before))


def mfcc_energy(signals: np.ndarray, sample_rate: int, window_ms: float = 50.0, hop_ms: float = 25.0,
                frames: int = 39) -> np.ndarray:
    """Features ``(N, 13, frames)`` float32 for a batch ``(N, samples)`` of equal-length signals."""
    window, hop, length = frame_geometry(sample_rate, window_ms, hop_ms, frames)
    if signals.ndim != 2 or signals.shape[1] != length:
        raise DatasetError(f"expected signals of shape (N, {length}), got {signals.shape}")
    mfcc = librosa.feature.mfcc(
        y=signals.astype(np.float32), sr=sample_rate, n_mfcc=N_MFCC + 1, n_fft=window, hop_length=hop,
        win_length=window, window="hann", center=False, n_mels=N_MELS,
    )
    framed = librosa.util.frame(signals, frame_length=window, hop_length=hop, axis=-1)
    energy = np.log(np.maximum(np.sum(framed.astype(np.float64) ** 2, axis=-2), ENERGY_FLOOR))
    features = np.concatenate([energy[:, None, :], mfcc[:, 1:, :]], axis=1)
    if features.shape[1:] != (N_MFCC + 1, frames):
        expected = (N_MFCC + 1, frames)
        raise DatasetError(f"feature extraction produced {features.shape[1:]}, expected {expected}")
    return features.astype(np.float32)
