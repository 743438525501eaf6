"""GriffinLimVocoder: AudioLDM's log-mel back to a waveform with no weights, inside the unmodified pipeline."""

import json

import numpy as np
import pytest
import soundfile
import torch
from diffusers import AudioLDMPipeline
from omegaconf import OmegaConf

from nextmm.config import load_model_config
from nextmm.data.decoder_media import DecoderMediaSpec, load_decoder_media
from nextmm.errors import ConfigError
from nextmm.parts.decoders import Decoders, build_component, build_pipeline
from nextmm.parts.vocoder import GriffinLimVocoder
from nextmm.toyworld.build import derive_seed
from nextmm.toyworld.features import PlaceJudge, band_share
from nextmm.toyworld.render import render_audio, sample_scene

RATE, HOP, BINS, FRAMES = 16000, 256, 64, 64
SPEC = DecoderMediaSpec("audio", sample_rate=RATE, frames=FRAMES, mel_bins=BINS, hop_length=HOP)


def log_mel_of(wave: np.ndarray, tmp_path) -> torch.Tensor:
    """(1, T, M): the log-mel the decoders' VAE is trained on (nextmm.data.decoder_media)."""
    soundfile.write(tmp_path / "wave.wav", wave, RATE)
    return load_decoder_media(SPEC, tmp_path / "wave.wav")


def test_a_tone_comes_back_at_its_pitch(tmp_path):
    time = np.arange(FRAMES * HOP) / RATE
    wave = (0.3 * np.sin(2 * np.pi * 1000 * time)).astype(np.float32)
    out = GriffinLimVocoder(model_in_dim=BINS, sampling_rate=RATE, upsample_rates=(8, 8, 4))(log_mel_of(wave, tmp_path))
    assert out.shape == (1, FRAMES * HOP) and out.dtype == torch.float32
    out = out[0].numpy()
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * RATE / len(out) - 1000) < 20
    assert band_share(out, (900, 1100), RATE) > 0.8
    assert 0.5 < out.std() / wave.std() < 1.5  # about as loud as the tone, not a whisper of it


def test_a_high_noise_band_keeps_its_energy_where_it_was(tmp_path):
    """The night's crickets (4-6.2 kHz) came out of the toy HiFi-GAN with no energy in their band."""
    noise = np.fft.rfft(np.random.default_rng(0).standard_normal(FRAMES * HOP))
    freqs = np.fft.rfftfreq(FRAMES * HOP, 1 / RATE)
    wave = np.fft.irfft(noise * ((freqs > 4500) & (freqs < 5500)), FRAMES * HOP).astype(np.float32)
    wave *= 0.2 / np.abs(wave).max()
    out = GriffinLimVocoder(model_in_dim=BINS, sampling_rate=RATE, upsample_rates=(8, 8, 4))(log_mel_of(wave, tmp_path))
    assert band_share(out[0].numpy(), (4000, 6200), RATE) > 0.9


def test_half_precision_input_gives_float32_sound(tmp_path):
    vocoder = GriffinLimVocoder(model_in_dim=BINS, sampling_rate=RATE, upsample_rates=(8, 8, 4))
    mel = torch.full((2, FRAMES, BINS), -4.0)
    assert vocoder(mel.half()).dtype == torch.float32
    assert torch.allclose(vocoder(mel.half()), vocoder(mel), atol=1e-3)


def test_the_pipeline_saves_and_loads_it_by_name(tmp_path):
    """A pipeline folder names the class in model_index.json; AudioLDMPipeline.from_pretrained builds it from its
    config.json alone (there is no weights file) and renders with it."""
    cfg = load_model_config("tiny").decoders.audio
    vocoder = OmegaConf.to_container(cfg.components.vocoder.config)
    pipe = build_pipeline("audio", cfg)
    pipe.register_modules(vocoder=GriffinLimVocoder(**{k: vocoder[k] for k in ("model_in_dim", "sampling_rate",
                                                                                 "upsample_rates")}))
    pipe.save_pretrained(tmp_path / "audio")
    assert json.loads((tmp_path / "audio" / "model_index.json").read_text())["vocoder"] == [
        "nextmm.parts.vocoder", "GriffinLimVocoder"]
    assert [p.name for p in (tmp_path / "audio" / "vocoder").iterdir()] == ["config.json"]
    loaded = AudioLDMPipeline.from_pretrained(tmp_path / "audio")
    assert isinstance(loaded.vocoder, GriffinLimVocoder) and loaded.vocoder.config.upsample_rates == [8, 5, 4]
    decoders = Decoders({"audio": {**{k: v for k, v in OmegaConf.to_container(cfg).items() if k != "components"},
                                   "path": str(tmp_path / "audio")}})
    [sound] = decoders.render("audio", decoders.encode_text("audio", ["rain"]), num_inference_steps=2,
                              guidance_scale=1.0, generator=torch.Generator().manual_seed(0), progress=False)
    assert sound.shape == (RATE * cfg.audio_seconds,) and np.isfinite(sound).all() and np.abs(sound).max() > 0


def test_a_decoder_config_builds_it_like_a_scheduler():
    built = build_component("vocoder", {"class": "GriffinLimVocoder",
                                        "config": {"model_in_dim": 64, "sampling_rate": 16000,
                                                   "upsample_rates": [8, 8, 4]}})
    assert isinstance(built, GriffinLimVocoder) and not list(built.parameters())
    toyworld = OmegaConf.merge(load_model_config("toyworld").decoders.audio, {"path": None})
    assert isinstance(build_pipeline("audio", toyworld).vocoder, GriffinLimVocoder)
    with pytest.raises(ConfigError, match="unknown class 'GriffinLim'"):
        build_component("vocoder", {"class": "GriffinLim", "config": {}})


@pytest.mark.parametrize("place", ["rain", "forest"])
def test_the_judge_places_the_worlds_sounds_after_a_log_mel_and_back(place, tmp_path):
    """A sound through the decoders' log-mel and Griffin-Lim is the same place's sound, but its bands some 100 dB
    under the loudest come back 20-40 dB louder. The judge of generated media (nextmm.toyworld.features.PlaceJudge)
    places it by what is audible: judged by those levels too, it took rain for the mountain (6 in 20 sounds)."""
    judge = PlaceJudge()
    vocoder = GriffinLimVocoder(model_in_dim=BINS, sampling_rate=RATE, upsample_rates=(8, 8, 4))
    placed = []
    for seed in range(8, 17):
        sound = render_audio(sample_scene(place, derive_seed(seed, "judge-check", place)))
        placed.append(judge("audio", vocoder(log_mel_of(sound, tmp_path))[0].numpy()))
    assert placed == [place] * len(placed)
