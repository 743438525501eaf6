"""HiFi-GAN's discriminators: every sub-discriminator judges a waveform, and the least-squares losses train them."""

import torch

from nextmm.toyworld.discriminators import (
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    WaveDiscriminators,
    discriminator_loss,
    feature_matching,
    generator_loss,
)


def test_each_period_and_scale_judges_the_waveform():
    wave = torch.randn(3, 1000)  # not a multiple of every period: padded
    logits, features = MultiPeriodDiscriminator((2, 3, 5), channels=4)(wave)
    assert len(logits) == len(features) == 3
    assert all(x.shape[0] == 3 and x.ndim == 2 for x in logits)
    assert [f[0].shape[-1] for f in features] == [2, 3, 5]  # a column per phase of the period
    logits, features = MultiScaleDiscriminator(scales=3, channels=4)(wave)
    assert len(logits) == 3 and logits[0].shape[1] > logits[1].shape[1] > logits[2].shape[1]
    logits, features = WaveDiscriminators((2, 3), scales=2, channels=4)(wave)
    assert len(logits) == len(features) == 4 and all(len(maps) == 5 for maps in features)


def test_least_squares_losses():
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros) == 0 and discriminator_loss(zeros, ones) == 2
    assert generator_loss(ones) == 0 and generator_loss(zeros) == 1
    maps = [[torch.ones(2, 3), torch.zeros(2, 4)]]
    assert feature_matching(maps, maps) == 0
    assert feature_matching(maps, [[torch.zeros(2, 3), torch.zeros(2, 4)]]) == 1


def test_the_discriminators_learn_to_tell_a_tone_from_noise():
    torch.manual_seed(0)
    time = torch.arange(2048) / 16000
    judge = WaveDiscriminators((2, 3), scales=2, channels=4)
    optimizer = torch.optim.Adam(judge.parameters(), lr=2e-3)

    def batch():
        phase = torch.rand(8, 1) * 6.28
        return 0.5 * torch.sin(2 * torch.pi * 440 * time + phase), 0.5 * torch.randn(8, 2048)

    first = None
    for _ in range(100):
        tone, noise = batch()
        loss = discriminator_loss(judge(tone)[0], judge(noise)[0])
        first = first if first is not None else float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    tone, noise = batch()
    with torch.no_grad():
        real, fake = judge(tone)[0], judge(noise)[0]
    assert float(discriminator_loss(real, fake)) < 0.5 * first
    assert all(r.mean() > f.mean() for r, f in zip(real, fake))
