"""HiFi-GAN's discriminators and losses, for training a vocoder adversarially (Kong et al., 2020).

A vocoder trained on spectral losses alone learns the average waveform for a log-mel: tonal sounds come out
quiet and buzzy, and energy leaks to where no STFT loss looks (below the lowest band, as a DC offset). HiFi-GAN
adds two kinds of discriminator that judge the waveform itself:

    MultiPeriodDiscriminator  the waveform folded into (T / p, p) for each period p (2, 3, 5, 7, 11): 2-d
                              convolutions along time, one column per phase, so each sees periodic structure
    MultiScaleDiscriminator   1-d convolutions on the waveform and on its 2x and 4x average-pooled versions

Both return, per sub-discriminator, its logits and its feature maps. The generator's loss is the least-squares
adversarial term plus feature matching (L1 between the feature maps of real and generated audio); the
discriminator's is the least-squares one. Channel widths are a parameter: the paper's are 32-1024, the toyworld
trains with a few dozen on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Judgement = tuple[list[torch.Tensor], list[list[torch.Tensor]]]  # logits per sub-discriminator, their feature maps

LEAK = 0.1  # leaky ReLU slope, as HiFi-GAN's


def _convolved(x: torch.Tensor, convs: nn.ModuleList, out: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A sub-discriminator's pass: leaky-ReLU convolutions, then the output layer; (B, logits) and every map."""
    features = []
    for conv in convs:
        x = nn.functional.leaky_relu(conv(x), LEAK)
        features.append(x)
    x = out(x)
    return x.flatten(1), [*features, x]


class PeriodDiscriminator(nn.Module):
    """One period p: (B, T) -> (B, 1, T / p, p), strided 2-d convolutions over time, kernel (k, 1)."""

    def __init__(self, period: int, channels: int, kernel: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        widths = [1, channels, channels * 2, channels * 4, channels * 4]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (kernel, 1), (stride if i < 3 else 1, 1), padding=(kernel // 2, 0)))
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))
        )
        self.out = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, length = wave.shape
        if length % self.period:
            wave = nn.functional.pad(wave, (0, self.period - length % self.period), mode="reflect")
        return _convolved(wave.view(batch, 1, -1, self.period), self.convs, self.out)


class ScaleDiscriminator(nn.Module):
    """One scale: (B, T) -> strided, grouped 1-d convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        widths = [1, channels, channels * 2, channels * 4, channels * 4]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            kernel, stride, groups = (15, 1, 1) if i == 0 else (41, 4, 4)
            layers.append(weight_norm(nn.Conv1d(a, b, kernel, stride, padding=kernel // 2, groups=groups)))
        self.convs = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv1d(widths[-1], 1, 3, padding=1))

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return _convolved(wave[:, None], self.convs, self.out)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wave: torch.Tensor) -> Judgement:
        judged = [d(wave) for d in self.discriminators]
        return [logits for logits, _ in judged], [features for _, features in judged]


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, scales: int = 3, channels: int = 16):
        super().__init__()
        self.discriminators = nn.ModuleList(ScaleDiscriminator(channels) for _ in range(scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wave: torch.Tensor) -> Judgement:
        logits, features = [], []
        for i, discriminator in enumerate(self.discriminators):
            if i:
                wave = self.pool(wave[:, None])[:, 0]
            out, maps = discriminator(wave)
            logits.append(out)
            features.append(maps)
        return logits, features


class WaveDiscriminators(nn.Module):
    """Both kinds together: forward(wave) gives the judgements of every sub-discriminator."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11), scales: int = 3, channels: int = 16):
        super().__init__()
        self.period = MultiPeriodDiscriminator(periods, channels)
        self.scale = MultiScaleDiscriminator(scales, channels)

    def forward(self, wave: torch.Tensor) -> Judgement:
        logits, features = self.period(wave)
        more_logits, more_features = self.scale(wave)
        return logits + more_logits, features + more_features


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Least squares: real logits towards 1, generated ones towards 0, summed over sub-discriminators."""
    return sum(((1 - r) ** 2).mean() + (f**2).mean() for r, f in zip(real, fake))


def generator_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Least squares: the generated audio's logits towards 1."""
    return sum(((1 - f) ** 2).mean() for f in fake)


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the real and generated feature maps, averaged per layer and summed."""
    return sum((r.detach() - f).abs().mean() for maps_r, maps_f in zip(real, fake) for r, f in zip(maps_r, maps_f))
