"""Hand-made features that tell the toyworld's concepts apart, and a nearest-centroid classifier on them.

Each concept has its own layout and palette and its own spectrum (docs/toyworld.md), so a few numbers suffice:

    image_features(image)    (H, W, 3) uint8 -> (48,) a 4 x 4 grid of mean colours in [0, 1]
    video_features(video)    (F, H, W, 3) uint8 -> (48,) the same, averaged over the frames
    audio_features(audio)    (n,) float -> (16,) log10 energies of 16 log-spaced bands, 40 Hz - 8 kHz, max = 0,
                             bands 60 dB or more under the loudest all at -6 (silence)

They judge generated media without a trained model: fit `NearestCentroid` on real media, predict generated ones.
`PlaceJudge` does both for every medium: which of the world's places a generated image, sound or clip shows.
"""

from __future__ import annotations

import numpy as np

from nextmm.toyworld.build import derive_seed
from nextmm.toyworld.concepts import CONCEPT_NAMES
from nextmm.toyworld.render import render_sample

SAMPLE_RATE = 16000
GRID = 4
BAND_EDGES = np.geomspace(40, 8000, 17)  # Hz
# Bands this far under the loudest (log10 of power: 60 dB) are silence to the judge. The world's own renders go down
# to -14 there, where no medium keeps anything (16-bit audio, a log-mel clamped at 1e-5 amplitude), and judged
# without this floor those inaudible levels outweighed the audible ones: 0.968 of the world's own sounds and 0.909
# of them through a log-mel and back were placed right, 0.982 and 0.959 with it (docs/experiments/toyworld.md).
SILENCE = -6.0


def image_features(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8, H and W divisible by 4 -> (48,) mean colour of each cell of a 4 x 4 grid, in [0, 1]."""
    height, width, channels = image.shape
    cells = image.reshape(GRID, height // GRID, GRID, width // GRID, channels).astype(np.float64)
    return cells.mean((1, 3)).ravel() / 255


def video_features(video: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (48,) the 4 x 4 grid of mean colours over all frames."""
    return np.mean([image_features(frame) for frame in video], axis=0)


def audio_features(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n,) waveform -> (16,) log10 energy of each log-spaced band from 40 Hz to 8 kHz, relative to the largest,
    and no lower than SILENCE."""
    power = np.abs(np.fft.rfft(np.asarray(audio, dtype=np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / sample_rate)
    bands = np.log10([power[(freqs >= lo) & (freqs < hi)].sum() + 1e-12
                      for lo, hi in zip(BAND_EDGES[:-1], BAND_EDGES[1:])])
    return np.maximum(bands - bands.max(), SILENCE)


def band_share(audio: np.ndarray, band: tuple[float, float], sample_rate: int = SAMPLE_RATE) -> float:
    """The share of a waveform's energy between band[0] and band[1] Hz (a concept's sound.band: >= 0.7 for the
    world's own sounds)."""
    power = np.abs(np.fft.rfft(np.asarray(audio, dtype=np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / sample_rate)
    return float(power[(freqs >= band[0]) & (freqs <= band[1])].sum() / max(power.sum(), 1e-20))


def spectral_centroid(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """A waveform's power-weighted mean frequency, in octaves above 1 Hz (its pitch and brightness in one number)."""
    power = np.abs(np.fft.rfft(np.asarray(audio, dtype=np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / sample_rate)
    return float(np.log2((freqs * power).sum() / max(power.sum(), 1e-20)))


class NearestCentroid:
    """Features standardised by the fitting set's mean and std; the label of the nearest class mean."""

    def fit(self, features: np.ndarray, labels: np.ndarray) -> NearestCentroid:
        """features (N, D), labels (N,) of any hashable kind."""
        features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
        self.mean, self.std = features.mean(0), features.std(0) + 1e-6
        self.classes = np.unique(labels)
        standard = (features - self.mean) / self.std
        self.centroids = np.stack([standard[labels == k].mean(0) for k in self.classes])  # (K, D)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N, D) -> (N,) labels."""
        standard = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        distances = ((standard[:, None] - self.centroids[None]) ** 2).sum(-1)  # (N, K)
        return self.classes[np.argmin(distances, axis=1)]


def nearest_centroid_accuracy(
    train: np.ndarray, test: np.ndarray, labels: np.ndarray, test_labels: np.ndarray | None = None
) -> float:
    """Share of `test` classified right by a NearestCentroid fit on (`train`, `labels`); `test_labels` default to
    `labels` (same layout)."""
    predicted = NearestCentroid().fit(train, labels).predict(test)
    return float((predicted == np.asarray(labels if test_labels is None else test_labels)).mean())


FEATURES = {"image": image_features, "audio": audio_features, "video": video_features}


class PlaceJudge:
    """Which place a medium shows, judged by the world's own features (colours, band energies) and not by a
    trained model: a NearestCentroid per modality, fit on ``per_concept`` freshly rendered scenes of each place.

        judge = PlaceJudge()
        judge("image", np.asarray(turn.images[0]))   # "beach"
    """

    def __init__(self, per_concept: int = 10, seed: int = 0):
        samples = [(c, render_sample(c, derive_seed(seed, "judge", c, i))) for c in CONCEPT_NAMES
                   for i in range(per_concept)]
        labels = np.array([c for c, _ in samples])
        self.classifiers = {m: NearestCentroid().fit(np.stack([FEATURES[m](getattr(s, m)) for _, s in samples]), labels)
                            for m in FEATURES}

    def __call__(self, modality: str, medium) -> str:
        """The place of an image (H, W, 3) uint8 (or a PIL image), a waveform (n,) or a clip (F, H, W, 3) uint8."""
        return str(self.classifiers[modality].predict(FEATURES[modality](np.asarray(medium))[None])[0])
