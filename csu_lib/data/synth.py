"""Sound design of the embedded benchmark: the 10 families of graded classes, one synthesiser
per family, the "recorded" and "generated" sources, and :func:`synthesize_clip`.

- 10 acoustic families of 5 classes. Within a family the classes differ in ONE graded
  parameter (a pitch, a rate, a centre frequency, a decay time, ...), so neighbouring classes
  are genuinely confusable.
- Each clip holds one salient event (random onset, length, level and within-class jitter of
  the graded parameter) over coloured background noise at a random SNR; several events of
  distinct classes when the benchmark is multi-label.
- Two sources per class: "recorded" (synthetic room reverb, microphone hiss, a random
  tilt filter) and "generated" (vocoder-like resynthesis: magnitude smoothed over frequency,
  phase perturbed, band-limited, magnitudes quantised).

All sound design lives in this module; :mod:`csu_lib.data.benchmark` assembles the dataset.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ..config import BenchmarkConfig

#: (family name, graded-parameter name, the five graded values) of each family.
FAMILIES: list[tuple[str, str, tuple[float, ...]]] = [
    ("harmonic", "f0_semitones_above_150Hz", (0.0, 4.0, 8.0, 12.0, 16.0)),
    ("sweep", "octaves_per_second", (-2.0, -1.0, 0.6, 1.5, 3.0)),
    ("am_tone", "modulation_hz", (3.0, 5.0, 8.0, 13.0, 21.0)),
    ("band_noise", "centre_hz", (400.0, 700.0, 1200.0, 2100.0, 3600.0)),
    ("clicks", "clicks_per_second", (4.0, 7.0, 11.0, 17.0, 26.0)),
    ("vibrato", "depth_semitones", (0.25, 0.6, 1.2, 2.2, 4.0)),
    ("vowel", "second_formant_hz", (800.0, 1150.0, 1600.0, 2050.0, 2600.0)),
    ("chord", "interval_semitones", (2.0, 3.0, 4.0, 5.0, 7.0)),
    ("impact", "decay_seconds", (0.02, 0.05, 0.12, 0.3, 0.7)),
    ("rhythm", "bursts_per_group", (1.0, 2.0, 3.0, 4.0, 5.0)),
]


def class_table(config: BenchmarkConfig) -> pd.DataFrame:
    """One row per class: name, family, index within the family, graded parameter and value."""
    rows = []
    for f, (fam, pname, values) in enumerate(FAMILIES[: config.n_families]):
        for k in range(config.classes_per_family):
            rows.append({"class_name": f"{fam}_{k + 1}", "family": fam, "family_index": f, "grade": k,
                         "parameter": pname, "value": values[k]})
    return pd.DataFrame(rows)


def _jitter(rng: np.random.Generator, value: float, rel: float) -> float:
    return value * float(np.exp(rng.uniform(-rel, rel)))


def _harmonic_stack(f0: np.ndarray | float, n: int, sr: int, n_harm: int, rolloff: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Sum of harmonics of a (possibly time-varying) fundamental, below Nyquist."""
    f0 = np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    out = np.zeros(n)
    for h in range(1, n_harm + 1):
        alive = (h * f0) < 0.45 * sr
        out += alive * np.sin(h * phase + rng.uniform(0, 2 * np.pi)) / h**rolloff
    return out


def _harmonic(rng, value, n, sr):
    f0 = 150.0 * 2 ** ((value + rng.uniform(-1.5, 1.5)) / 12)
    return _harmonic_stack(f0, n, sr, n_harm=8, rolloff=rng.uniform(0.8, 1.4), rng=rng)


def _sweep(rng, value, n, sr):
    rate = _jitter(rng, value, 0.15)
    t = np.arange(n) / sr
    start = 2 ** rng.uniform(np.log2(300), np.log2(1500))
    f = np.clip(start * 2 ** (rate * (t - t[-1] / 2)), 80, 0.4 * sr)
    return _harmonic_stack(f, n, sr, n_harm=2, rolloff=1.5, rng=rng)


def _am_tone(rng, value, n, sr):
    fm = _jitter(rng, value, 0.08)
    t = np.arange(n) / sr
    carrier = _harmonic_stack(2 ** rng.uniform(np.log2(500), np.log2(2000)), n, sr, 3, 1.5, rng)
    return carrier * (1 - 0.9 * (0.5 + 0.5 * np.cos(2 * np.pi * fm * t + rng.uniform(0, 2 * np.pi))))


def _band_noise(rng, value, n, sr):
    centre = value * 2 ** (rng.uniform(-1.0, 1.0) / 12)
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    width = 1 / 6  # octaves (standard deviation of a Gaussian in log frequency)
    gain = np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / centre) / width) ** 2)
    return np.fft.irfft(spec * gain, n)


def _click(rng, sr, brightness):
    m = max(8, int(0.004 * sr))
    return rng.standard_normal(m) * np.exp(-np.arange(m) / (brightness * sr))


def _place(n: int, times: np.ndarray, grain: np.ndarray) -> np.ndarray:
    out = np.zeros(n + len(grain))
    for t in times:
        out[t:t + len(grain)] += grain
    return out[:n]


def _clicks(rng, value, n, sr):
    rate = _jitter(rng, value, 0.08)
    period = sr / rate
    times = (np.arange(0, n, period) + rng.uniform(0, period)
             + rng.normal(0, 0.03 * period, size=len(np.arange(0, n, period))))
    times = times[(times >= 0) & (times < n)].astype(int)
    return _place(n, times, _click(rng, sr, rng.uniform(3e-4, 1e-3)))


def _vibrato(rng, value, n, sr):
    depth = _jitter(rng, value, 0.12)
    t = np.arange(n) / sr
    base = 2 ** rng.uniform(np.log2(400), np.log2(900))
    f = base * 2 ** (depth / 12 * np.sin(2 * np.pi * rng.uniform(5, 7) * t + rng.uniform(0, 2 * np.pi)))
    return _harmonic_stack(f, n, sr, n_harm=4, rolloff=1.2, rng=rng)


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    """Two-pole resonant filter applied in the frequency domain (no scipy needed)."""
    n = len(x)
    freqs = np.fft.rfftfreq(n, 1 / sr)
    resp = 1.0 / (1.0 + ((freqs**2 - freq**2) / (np.maximum(freqs, 1.0) * bw)) ** 2) ** 0.5
    return np.fft.irfft(np.fft.rfft(x) * resp, n)


def _vowel(rng, value, n, sr):
    f0 = rng.uniform(100, 160)
    pulses = np.zeros(n)
    pos = np.cumsum(np.full(int(n / sr * f0) + 2, sr / f0) * np.exp(rng.normal(0, 0.01, int(n / sr * f0) + 2)))
    pulses[pos[pos < n].astype(int)] = 1.0
    f1 = rng.uniform(450, 600)
    f2 = _jitter(rng, value, 0.05)
    return _resonator(pulses, f1, 90, sr) + 0.7 * _resonator(pulses, f2, 120, sr) + 0.3 * _resonator(pulses, 2900, 200, sr)


def _chord(rng, value, n, sr):
    root = 2 ** rng.uniform(np.log2(200), np.log2(400))
    interval = value + rng.uniform(-0.3, 0.3)
    return sum(_harmonic_stack(root * 2 ** (i * interval / 12), n, sr, 4, 1.3, rng) for i in range(3))


def _impact(rng, value, n, sr):
    decay = _jitter(rng, value, 0.15)
    t = np.arange(n) / sr
    modes = 2 ** rng.uniform(np.log2(300), np.log2(3000), size=3)
    one = sum(np.sin(2 * np.pi * m * t + rng.uniform(0, 2 * np.pi)) for m in modes) * np.exp(-t / decay)
    hits = 1 + int(rng.integers(0, 3))
    starts = np.sort(rng.integers(0, max(1, n // 2), size=hits))
    return sum(np.concatenate([np.zeros(s), one[: n - s]]) for s in starts)


def _rhythm(rng, value, n, sr):
    bursts = int(round(value))
    freq = 2 ** rng.uniform(np.log2(700), np.log2(1500))
    length = int(0.05 * sr)
    grain = np.sin(2 * np.pi * freq * np.arange(length) / sr) * np.hanning(length)
    group_period = int(_jitter(rng, 0.6, 0.05) * sr)
    spacing = int(_jitter(rng, 0.09, 0.05) * sr)
    start = int(rng.integers(0, group_period))
    times = [g + b * spacing for g in range(start - group_period, n, group_period) for b in range(bursts)]
    return _place(n, np.array([t for t in times if 0 <= t < n], dtype=int), grain)


SYNTHS: dict[str, Callable[..., np.ndarray]] = {
    "harmonic": _harmonic, "sweep": _sweep, "am_tone": _am_tone, "band_noise": _band_noise,
    "clicks": _clicks, "vibrato": _vibrato, "vowel": _vowel, "chord": _chord,
    "impact": _impact, "rhythm": _rhythm,
}


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    size = 1 << int(np.ceil(np.log2(len(x) + len(h))))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: len(x)]


def _recorded(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Room reverb (exponentially decaying noise tail), a tilt filter and microphone hiss."""
    rt60 = rng.uniform(0.15, 0.6)
    m = int(rt60 * sr)
    t = np.arange(m) / sr
    rir = rng.standard_normal(m) * np.exp(-6.9 * t / rt60)
    rir[0] = 0.0
    rir = rir / np.sqrt(np.sum(rir**2)) * rng.uniform(0.3, 0.8)
    rir[0] = 1.0
    y = _fft_convolve(x, rir)
    spec = np.fft.rfft(y)
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    tilt = (np.maximum(freqs, 50.0) / 1000.0) ** rng.uniform(-0.3, 0.1)
    y = np.fft.irfft(spec * tilt, len(y))
    return y + rng.standard_normal(len(y)) * _rms(y) * 10 ** (-rng.uniform(30, 45) / 20)


def _stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    pad = np.pad(x, (n_fft, n_fft))
    frames = np.lib.stride_tricks.sliding_window_view(pad, n_fft)[::hop]
    return np.fft.rfft(frames * np.hanning(n_fft), axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, n: int) -> np.ndarray:
    win = np.hanning(n_fft)
    frames = np.fft.irfft(spec, n_fft, axis=1) * win
    out = np.zeros(hop * (len(frames) - 1) + n_fft)
    norm = np.zeros_like(out)
    for i, fr in enumerate(frames):
        out[i * hop:i * hop + n_fft] += fr
        norm[i * hop:i * hop + n_fft] += win**2
    out = out / np.maximum(norm, 1e-8)
    return out[n_fft:n_fft + n]


def _generated(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Vocoder-like resynthesis: smoothed, quantised magnitudes, perturbed phase, band limit."""
    n_fft, hop = 512, 128
    spec = _stft(x, n_fft, hop)
    mag, phase = np.abs(spec), np.angle(spec)
    width = int(rng.integers(3, 8))
    kernel = np.ones(width) / width
    mag = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, mag)
    step_db = rng.uniform(1.0, 3.0)
    mag_db = 20 * np.log10(mag + 1e-9)
    mag = 10 ** (np.round(mag_db / step_db) * step_db / 20)
    phase = phase + rng.uniform(-np.pi, np.pi, size=phase.shape) * rng.uniform(0.15, 0.4)
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    mag = mag * (freqs < rng.uniform(0.35, 0.47) * sr)
    return _istft(mag * np.exp(1j * phase), n_fft, hop, len(x))


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spec = spec / np.maximum(freqs, 20.0) ** (rng.uniform(0.0, 2.0) / 2)
    return np.fft.irfft(spec, n)


def _event(rng: np.random.Generator, family: str, value: float, n: int, sr: int) -> np.ndarray:
    """One event with random length, onset and fades, placed in a clip of ``n`` samples."""
    length = int(n * rng.uniform(0.4, 0.9))
    onset = int(rng.integers(0, n - length + 1))
    sig = SYNTHS[family](rng, value, length, sr)
    fade = min(int(0.01 * sr), length // 4)
    env = np.ones(length)
    env[:fade] = np.linspace(0, 1, fade)
    env[length - fade:] = np.linspace(1, 0, fade)
    out = np.zeros(n)
    out[onset:onset + length] = sig * env / _rms(sig)
    return out


def synthesize_clip(config: BenchmarkConfig, class_indices: list[int], source: str,
                    rng: np.random.Generator) -> np.ndarray:
    """Render one clip holding events of ``class_indices`` (the first is the salient one)."""
    sr = config.sample_rate
    n = int(round(config.clip_seconds * sr))
    table = class_table(config)
    mix = np.zeros(n)
    for j, c in enumerate(class_indices):
        row = table.iloc[c]
        ev = _event(rng, row["family"], float(row["value"]), n, sr)
        mix += ev * (10 ** (-rng.uniform(0, 6) / 20) if j else 1.0)
    if source == "recorded":
        mix = _recorded(mix, rng, sr)
    else:
        mix = _generated(mix, rng, sr)
    active = np.abs(mix) > 1e-6 * np.max(np.abs(mix))
    snr = rng.uniform(*config.snr_db)
    noise = _background(rng, n, sr)
    noise = noise / _rms(noise) * _rms(mix[active]) * 10 ** (-snr / 20)
    clip = mix + noise
    return (clip / np.max(np.abs(clip)) * rng.uniform(0.3, 0.9)).astype(np.float32)
