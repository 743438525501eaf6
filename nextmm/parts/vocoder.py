"""A vocoder with no weights: Griffin-Lim phase retrieval from AudioLDM's log-mel spectrogram.

AudioLDM's last step turns the log-mel spectrogram its VAE decodes (B, T, M) into a waveform with a trained
HiFi-GAN (`SpeechT5HifiGan`). `GriffinLimVocoder` takes that place with the classic algorithm instead (Griffin and
Lim, 1984, as torchaudio implements it, with its "fast" momentum): the mel filterbank is inverted to a magnitude
spectrogram by its pseudo-inverse, and Griffin-Lim finds a phase that fits it. Where a sound's energy lies in
frequency and time is what the log-mel says, with no training; the price is a phasey timbre and iterations at render
time (32 STFT round trips: about 30 ms for toyworld's 2 s on two CPU cores).

The toyworld decoder uses it: a HiFi-GAN small enough to train on two CPU cores lost the world's tonal sounds
(crickets, birdsong, cowbells) and its lowest bands, so six places of eleven did not sound like themselves
(docs/experiments/toyworld.md). The real AudioLDM keeps its HiFi-GAN.

`AudioLDMPipeline` takes it as its `vocoder` component unchanged: the pipeline reads `config.model_in_dim`
(mel bins), `config.sampling_rate` and `config.upsample_rates` (their product is the mel hop) and calls it on
(B, T, M). The mel spectrogram is AudioLDM's (nextmm.data.decoder_media): magnitude, 0 Hz to half the rate,
Slaney scale and norm, a Hann window of `n_fft` samples. `save_pretrained` writes its config.json alone and
`from_pretrained` reads it back; `AudioLDMPipeline.from_pretrained` loads a folder whose model_index.json names this
class once `nextmm.parts.vocoder` is imported, as `nextmm.parts.decoders` does.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config


class GriffinLimVocoder(ModelMixin, ConfigMixin):
    """log-mel (B, T, M) -> waveform (B, T * hop), hop = prod(upsample_rates), as `SpeechT5HifiGan`; float32
    whatever the input's dtype (the pseudo-inverse and the STFTs need it)."""

    @register_to_config
    def __init__(
        self,
        model_in_dim: int = 64,
        sampling_rate: int = 16000,
        upsample_rates: tuple[int, ...] = (8, 8, 4),
        n_fft: int = 1024,
        n_iter: int = 32,
        momentum: float = 0.99,
    ):
        super().__init__()
        self.hop_length = math.prod(upsample_rates)
        filterbank = torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, 0.0, sampling_rate / 2, model_in_dim, sampling_rate, norm="slaney", mel_scale="slaney"
        )  # (F, M): mel = filterbank.T @ magnitude
        # Derived from the config, not saved: there is no weights file to disagree with it.
        inverse = torch.linalg.pinv(filterbank.T.double()).float()  # (F, M)
        self.register_buffer("mel_inverse", inverse, persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None,
                        **kwargs) -> GriffinLimVocoder:
        """Built from the folder's config.json alone: ModelMixin's loader wants a weights file, and there is none.
        The pipeline loader's other arguments (dtype, device map, ...) have nothing to act on: it computes in
        float32 whatever the pipeline's dtype."""
        return cls.from_config(cls.load_config(pretrained_model_name_or_path, subfolder=subfolder)).eval()

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        config = self.config
        frames = log_mel.shape[-2]
        mel = log_mel.float().exp().transpose(-1, -2)  # (B, M, T)
        magnitude = (self.mel_inverse.float() @ mel).clamp(min=0.0)  # (B, F, T); negative magnitudes are not sound
        waveform = torchaudio.functional.griffinlim(
            magnitude, self.window.float(), config.n_fft, self.hop_length, config.n_fft, 1.0, config.n_iter,
            config.momentum, (frames - 1) * self.hop_length, False,
        )  # (B, (T - 1) * hop): what T centred STFT frames span
        # HiFi-GAN gives T * hop samples and the pipeline cuts its length from that: the last hop is silence
        return torch.nn.functional.pad(waveform, (0, self.hop_length))
