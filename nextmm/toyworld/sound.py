"""The toyworld's sounds: one numpy synthesiser per kind, jittered by the generator it is given.

``synthesize(kind, rng, n, rate) -> (n,) float64`` at any scale; nextmm.toyworld.render.render_audio
peak-normalises it. The spectrum of each kind is in nextmm.toyworld.concepts (``Sound.band``) and the docs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Synth = Callable[[np.random.Generator, int, int], np.ndarray]
SOUNDS: dict[str, Synth] = {}


def sound(kind: str):
    def register(synth: Synth) -> Synth:
        SOUNDS[kind] = synth
        return synth

    return register


def synthesize(kind: str, rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    if kind not in SOUNDS:
        raise ValueError(f"unknown toyworld sound {kind!r}: use one of {', '.join(SOUNDS)}")
    return SOUNDS[kind](rng, n, rate)


# --------------------------------------------------------------------------------------------- helpers
def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def _filtered(x: np.ndarray, rate: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``x`` through a zero-phase filter with frequency response ``gain(freqs_hz)``."""
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return np.fft.irfft(np.fft.rfft(x) * gain(freqs), len(x))


def _band(lo: float, hi: float, rolloff: float = 0.3) -> Callable[[np.ndarray], np.ndarray]:
    """Gain 1 in [lo, hi] Hz, falling off as a Gaussian in octaves (``rolloff`` octaves) outside."""

    def gain(f):
        octaves = np.log2(np.maximum(f, 1.0))
        below, above = np.log2(lo) - octaves, octaves - np.log2(hi)
        distance = np.maximum(np.maximum(below, above), 0)
        return np.exp(-0.5 * (distance / rolloff) ** 2)

    return gain


def _noise(rng, n: int, rate: int, lo: float, hi: float, rolloff: float = 0.3) -> np.ndarray:
    return _unit(_filtered(rng.standard_normal(n), rate, _band(lo, hi, rolloff)))


def _smooth(rng, n: int, rate: int, changes: float, lo: float, hi: float) -> np.ndarray:
    """A random curve in [lo, hi] that changes about ``changes`` times a second (cosine-interpolated)."""
    points = max(2, int(np.ceil(n / rate * changes)) + 2)
    values = rng.uniform(lo, hi, points)
    position = np.arange(n) / rate * changes
    index = position.astype(int)
    frac = 0.5 - 0.5 * np.cos(np.pi * (position - index))
    return values[index] * (1 - frac) + values[index + 1] * frac


def _phase(freq: np.ndarray | float, n: int, rate: int) -> np.ndarray:
    """Phase (radians) of an oscillator whose frequency may vary per sample."""
    return 2 * np.pi * np.cumsum(np.broadcast_to(freq, (n,))) / rate


def _add(out: np.ndarray, start: int, note: np.ndarray) -> None:
    """Mix ``note`` into ``out`` from sample ``start``, cutting what runs past either end."""
    if start >= len(out) or start + len(note) <= 0:
        return
    lo = max(start, 0)
    out[lo : start + len(note)] += note[lo - start : len(out) - start]


def _decay(length: int, rate: int, tau: float, attack: float = 0.005) -> np.ndarray:
    t = np.arange(length) / rate
    return np.minimum(t / attack, 1.0) * np.exp(-t / tau)


def _midi(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


# --------------------------------------------------------------------------------------------- nature
@sound("waves")
def waves(rng, n, rate):
    t = np.arange(n) / rate
    swell = (0.5 - 0.5 * np.cos(2 * np.pi * rng.uniform(0.4, 0.8) * t + rng.uniform(0, 2 * np.pi))) ** 1.5
    body = _noise(rng, n, rate, rng.uniform(150, 250), rng.uniform(1200, 2000), 0.4)
    spray = _noise(rng, n, rate, 1500, 3500, 0.3)
    return body * (0.2 + 0.8 * swell) + 0.3 * spray * swell**4


@sound("wind")
def wind(rng, n, rate):
    gust = _smooth(rng, n, rate, rng.uniform(0.8, 1.6), 0.2, 1.0)
    cutoff = rng.uniform(200, 350)
    low = _unit(_filtered(rng.standard_normal(n), rate, lambda f: 1 / (1 + (f / cutoff) ** 4)))
    pitch = rng.uniform(650, 1000) * (1 + 0.08 * _smooth(rng, n, rate, 0.7, -1, 1))
    whistle = np.sin(_phase(pitch, n, rate)) * _smooth(rng, n, rate, 1.2, 0.2, 1.0)
    return low * gust + rng.uniform(0.2, 0.32) * np.sqrt(2) * whistle * gust


@sound("birdsong")
def birdsong(rng, n, rate):
    out = np.zeros(n)
    seconds = n / rate
    starts = np.sort(rng.uniform(-0.1, seconds - 0.1, max(2, int(round(rng.uniform(2.0, 3.0) * seconds)))))
    for start in starts:  # a phrase: a few similar rising chirps
        low, high = rng.uniform(1600, 2100), rng.uniform(2900, 3500)
        position = start
        for _ in range(rng.integers(2, 6)):
            length = int(rng.uniform(0.05, 0.11) * rate)
            sweep = np.linspace(low, high, length) * rng.uniform(0.95, 1.05)
            chirp = np.sin(_phase(sweep, length, rate)) * np.hanning(length) * rng.uniform(0.6, 1.0)
            _add(out, int(position * rate), chirp)
            position += length / rate + rng.uniform(0.02, 0.06)
    return out + 0.01 * _noise(rng, n, rate, 500, 3000)


@sound("crickets")
def crickets(rng, n, rate):
    out = np.zeros(n)
    t = np.arange(n) / rate
    for loudness in (1.0, rng.uniform(0.4, 0.8)):
        carrier = np.sin(2 * np.pi * rng.uniform(4500, 5400) * t)
        pulse, gap = rng.uniform(0.012, 0.018), rng.uniform(0.012, 0.018)
        period, count = rng.uniform(0.25, 0.45), rng.integers(3, 5)
        envelope = np.zeros(n)
        length = int(pulse * rate)
        for chirp in np.arange(rng.uniform(-period, 0), n / rate, period):
            for k in range(count):
                _add(envelope, int((chirp + k * (pulse + gap)) * rate), np.hanning(length))
        out += loudness * carrier * envelope
    return out + 0.005 * _noise(rng, n, rate, 100, 800)


@sound("rain")
def rain(rng, n, rate):
    hiss = _noise(rng, n, rate, 2500, 7000, 0.4)
    drops = (rng.random(n) < rng.uniform(300, 600) / rate) * rng.exponential(1.0, n)
    drops = _unit(_filtered(drops, rate, _band(2500, 7500, 0.3)))
    return (0.6 * hiss + 0.8 * drops) * _smooth(rng, n, rate, 1.0, 0.85, 1.0)


@sound("footsteps")
def footsteps(rng, n, rate):
    envelope = np.zeros(n)
    period = rng.uniform(0.45, 0.6)
    for start in np.arange(rng.uniform(0, 0.25), n / rate, period):
        length = int(rng.uniform(0.16, 0.26) * rate)
        _add(envelope, int(start * rate), _decay(length, rate, length / rate / 3, attack=0.01))
    grains = (rng.random(n) < 3000 / rate) * rng.exponential(1.0, n) * envelope
    crunch = _filtered(grains, rate, _band(rng.uniform(600, 800), rng.uniform(2600, 3200), 0.25))
    return _unit(crunch) + 0.03 * _noise(rng, n, rate, 60, 300)


@sound("bees")
def bees(rng, n, rate):
    out = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        vibrato = 1 + rng.uniform(0.015, 0.04) * np.sin(_phase(rng.uniform(5, 9), n, rate))
        phase = _phase(rng.uniform(190, 250) * vibrato, n, rate)
        buzz = sum(np.sin(k * phase) / k for k in range(1, 9))  # a sawtooth's first harmonics
        out += buzz * _smooth(rng, n, rate, 1.0, 0.3, 1.0)
    return out + 0.1 * _noise(rng, n, rate, 200, 2000)


@sound("bells")
def bells(rng, n, rate):
    out = np.zeros(n)
    pitches = rng.uniform(600, 950, rng.integers(2, 4))
    ratios, weights = np.array([1.0, 2.0, 2.76, 4.07, 5.4]), np.array([1.0, 0.45, 0.6, 0.3, 0.2])
    position = rng.uniform(0, 0.2)
    while position < n / rate:
        f0, tau = pitches[rng.integers(0, len(pitches))], rng.uniform(0.25, 0.5)
        length = int(min(4 * tau, 1.5) * rate)
        t = np.arange(length) / rate
        strike = sum(w * rng.uniform(0.8, 1.2) * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * np.sqrt(r) / tau)
                     for r, w in zip(ratios, weights))
        _add(out, int(position * rate), strike * np.minimum(t / 0.002, 1.0) * rng.uniform(0.6, 1.0))
        position += rng.uniform(0.25, 0.6)
    return out


# ------------------------------------------------------------------------------------ engines, music
@sound("engine")
def engine(rng, n, rate):
    t = np.arange(n) / rate
    f0 = rng.uniform(35, 70) * (1 + 0.03 * _smooth(rng, n, rate, 0.5, -1, 1))
    phase = _phase(f0, n, rate)
    hum = sum(k**-0.8 * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 11))
    rumble = _unit(_filtered(rng.standard_normal(n), rate, lambda f: 1 / (1 + (f / 120) ** 4)))
    passing = np.exp(-0.5 * ((t - rng.uniform(0.2, 0.8) * t[-1]) / 0.35) ** 2)  # a car going by
    doppler = rng.uniform(90, 130) * (1 - 0.06 * np.tanh(3 * (t - t[np.argmax(passing)])))
    car = sum(k**-1.0 * np.sin(k * _phase(doppler, n, rate)) for k in range(1, 5))
    return _unit(hum) + 0.3 * rumble + 0.8 * _unit(car) * passing


@sound("lively_music")
def lively_music(rng, n, rate):
    out = np.zeros(n)
    beat = 60 / rng.uniform(126, 150)
    root = _midi(rng.integers(57, 65))
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16])
    degree = rng.integers(0, 5)
    for i, start in enumerate(np.arange(0, n / rate, beat / 2)):  # eighth notes
        degree = int(np.clip(degree + rng.choice([-2, -1, 0, 1, 2]), 0, len(scale) - 1))
        length = int(beat / 2 * rate)
        t = np.arange(length) / rate
        f = root * 2 ** (scale[degree] / 12)
        square = np.sin(2 * np.pi * f * t) + np.sin(6 * np.pi * f * t) / 3 + np.sin(10 * np.pi * f * t) / 5
        _add(out, int(start * rate), 0.5 * square * _decay(length, rate, 0.09))
        if i % 2 == 0:  # on the beat: bass (root or fifth), kick
            bass = root / 2 * (1.5 if (i // 8) % 2 else 1.0)
            length = int(beat * rate)
            t = np.arange(length) / rate
            _add(out, int(start * rate),
                 0.35 * (np.sin(2 * np.pi * bass * t) + 0.3 * np.sin(4 * np.pi * bass * t)) * _decay(length, rate, 0.2))
            kick = np.sin(_phase(50 + 100 * np.exp(-t / 0.03), length, rate)) * _decay(length, rate, 0.12, 0.002)
            _add(out, int(start * rate), 0.7 * kick)
        else:  # off the beat: hi-hat
            length = int(0.03 * rate)
            _add(out, int(start * rate), 0.06 * rng.standard_normal(length) * _decay(length, rate, 0.01, 0.001))
    return out


@sound("calm_music")
def calm_music(rng, n, rate):
    out = np.zeros(n)
    root = rng.integers(48, 56)
    progressions = ([0, 5, 7, 0], [0, 9, 5, 7], [0, 7, 9, 5], [0, 5, 9, 7])
    progression = progressions[rng.integers(0, len(progressions))]
    length = rng.uniform(0.9, 1.3)
    fade = 0.3
    for i, start in enumerate(np.arange(0, n / rate, length)):
        step = progression[i % len(progression)]
        minor = step == 9
        tones = [root + step, root + step + (3 if minor else 4), root + step + 7, root + step + 12]
        samples = int((length + fade) * rate)
        t = np.arange(samples) / rate
        window = np.minimum(np.minimum(t / fade, 1.0), np.minimum((length + fade - t) / fade, 1.0))
        window = 0.5 - 0.5 * np.cos(np.pi * np.clip(window, 0, 1))
        chord = sum(np.sin(2 * np.pi * _midi(m) * t) + 0.25 * np.sin(4 * np.pi * _midi(m) * t) for m in tones)
        _add(out, int(start * rate), chord * window)
        if rng.random() < 0.7:  # a soft high note
            m = tones[rng.integers(0, 3)] + 24
            note = int(1.0 * rate)
            _add(out, int((start + rng.uniform(0, length / 2)) * rate),
                 0.8 * np.sin(2 * np.pi * _midi(m) * np.arange(note) / rate) * _decay(note, rate, 0.35, 0.02))
    return out * (1 + 0.1 * np.sin(_phase(rng.uniform(0.15, 0.3), n, rate)))
