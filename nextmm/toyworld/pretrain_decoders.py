"""Pretraining what NExT-GPT takes pretrained on the output side: tiny Stable Diffusion, AudioLDM and Zeroscope.

    python -m nextmm world output=data/toyworld
    python -m nextmm train pretrain_decoders data_root=data/toyworld output_dir=runs/pretrain_decoders

For each modality of `modalities`, the pipeline's components are built as the decoder config says
(nextmm/conf/decoders/toyworld.yaml) and trained on the world's training scenes (scenes.json), one part at a time:

    vae      AutoencoderKL on the media in the layout nextmm.data.decoder_media gives (images, video frames,
             AudioLDM's log-mel spectrograms (1, frames, mel bins)): L1 reconstruction + a small KL, on random
             crops; then vae.config.scaling_factor = 1 / std of the latents, as Stable Diffusion's
    vocoder  audio with a trained vocoder (decoders=toyworld_hifigan; toyworld's own, GriffinLimVocoder, has no
             weights and skips it): SpeechT5HifiGan, log-mel -> waveform: L1 between the log-mels of its output
             and of the real audio + a multi-resolution STFT loss + log band energies; with
             vocoder.adversarial.weight > 0 also HiFi-GAN's adversarial and feature-matching terms from its
             multi-period and multi-scale discriminators (nextmm.toyworld.discriminators)
    clap     audio only: the CLAP text encoder, contrastively (InfoNCE) against a small log-mel encoder that is
             thrown away afterwards, as AudioLDM conditions on a pretrained CLAP. Its pooled embedding is the
             UNet's only conditioning; learned by denoising alone it stays the same for every caption
    unet     the UNet, and the text encoder unless `train_text_encoder` is false (audio: CLAP stays frozen): min-SNR-weighted epsilon (or v) prediction on the scaled
             latents, conditioned exactly as the pipeline conditions (encode_prompt, or AudioLDM's _encode_prompt
             whose L2-normalised CLAP embedding the UNet takes as class labels), on the scene's caption or one
             drawn afresh from the world's training wordings, empty for a share of them (classifier-free guidance)

Each pipeline is written with save_pretrained to <output_dir>/<modality>/ (decoders.<modality>.path=<it> loads it).
Each modality draws from random streams of its own (derived from `seed` and the modality), so `modalities=[image]`
retrains the image decoder exactly as a full run would, and the other decoders do not change with its recipe.
A decoder config with `path` set starts from that folder instead of random weights, and `phases` (default: all
four) names the parts trained; a decoder without such a part (an image decoder's vocoder, Griffin-Lim's weights)
skips it. `phases=[vocoder] decoders=toyworld_hifigan decoders.audio.path=<folder>` gives that decoder a new
vocoder and keeps its VAE, CLAP and UNet to the byte. The quality check renders
every concept's canonical caption through nextmm.parts.decoders.Decoders from the written folder, with the config's
num_inference_steps and guidance_scale, and classifies the media by the nearest centroid of the real training
media's features (nextmm/toyworld/features.py). metrics.json holds, per modality, that accuracy (overall and per
concept), the seconds to render one medium, the scaling factor, the first and last losses and each phase's seconds.

Every phase runs on the one training loop (nextmm.training.loop), checkpointed every ``checkpoint.every`` steps
and at its end under <output_dir>/checkpoints/<modality>/<phase>/. resume=true continues a stopped run, in a
phase, between phases or between decoders, to the weights an uninterrupted run ends with: finished phases are
loaded from their last checkpoint with the random streams' states, and a decoder already written and checked is
kept (checkpoints/<modality>/finished.json). A resumed run's seconds count its own work only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from accelerate import Accelerator
from diffusers import DDPMScheduler, DiffusionPipeline
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from nextmm.atomic import staged_file, staged_folder
from nextmm.data.decoder_media import (
    AUDIO_FFT,
    LOG_FLOOR,
    DecoderMediaSpec,
    decoder_media_spec,
    load_decoder_media,
)
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES
from nextmm.parts.decoders import Decoders, build_component, build_pipeline, plain
from nextmm.toyworld.discriminators import (
    WaveDiscriminators,
    discriminator_loss,
    feature_matching,
    generator_loss,
)
from nextmm.toyworld.features import (
    NearestCentroid,
    audio_features,
    image_features,
    video_features,
)
from nextmm.toyworld.language import canonical_caption, captions
from nextmm.training.checkpoints import CHECKPOINTS, Checkpoints, ModuleWeights
from nextmm.training.contrastive import InfoNCE
from nextmm.training.loop import ModuleLoss, RandomBatches, train_loop
from nextmm.training.losses import min_snr_weights
from nextmm.training.run import BatchSize, start_run

STAGE = "pretrain_decoders"
FINISHED = "finished.json"  # in a modality's checkpoints: its metrics, once its folder is written and checked
PHASES = ("vae", "vocoder", "clap", "unet")  # in training order; audio alone has a vocoder and a CLAP
FEATURES = {"image": image_features, "audio": audio_features, "video": video_features}
STFT_RESOLUTIONS = ((256, 64), (1024, 256), (2048, 512))  # (n_fft, hop) of the vocoder's multi-resolution loss
BANDS, BAND_RANGE, BAND_FFT, BAND_FLOOR = 32, (30.0, 8000.0), 2048, 1e-8  # the vocoder's log band-energy loss
log = logging.getLogger(STAGE)


# --------------------------------------------------------------------------------------------------- data
def load_scenes(root: Path) -> list[dict]:
    """The training scenes of a toyworld folder: [{"concept", "image", "audio", "video", "captions": {m: ...}}]."""
    path = root / "scenes.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: data_root must be a toyworld (python -m nextmm world output=...)")
    scenes = json.loads(path.read_text(encoding="utf-8"))
    if not scenes:
        raise ConfigError(f"{path} lists no scenes")
    return scenes


def concept_captions(root: Path, concepts: Iterable[str], modality: str) -> dict[str, str]:
    """Each concept's canonical caption: eval/concepts.json when the world has it, else the language module's."""
    path = root / "eval" / "concepts.json"
    table = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {c: table[c]["captions"][modality] if c in table else canonical_caption(c, modality) for c in concepts}


def load_media(spec: DecoderMediaSpec, paths: Sequence[Path], workers: int) -> torch.Tensor:
    """The files in the decoder's VAE layout (nextmm.data.decoder_media, as the decoder-side stage reads them):
    image (N, 3, H, W) and video (N, F, 3, H, W) in [-1, 1], audio (N, 1, T, M) log-mel."""
    with ThreadPoolExecutor(max(1, workers)) as pool:  # video decoding runs in ffmpeg processes
        items = list(tqdm(pool.map(lambda p: load_decoder_media(spec, p), paths), total=len(paths),
                          desc=f"reading {spec.modality}", leave=False))
    return torch.stack(items)


def load_waveforms(spec: DecoderMediaSpec, paths: Sequence[Path]) -> torch.Tensor:
    """(N, T * hop) mono waveforms at the vocoder's rate, cut or zero-padded to the mel frames' length."""
    length = spec.frames * spec.hop_length
    waves = []
    for path in paths:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        wave = torch.from_numpy(samples.mean(axis=1))
        if rate != spec.sample_rate:
            wave = torchaudio.functional.resample(wave, rate, spec.sample_rate)
        waves.append(nn.functional.pad(wave[:length], (0, max(0, length - wave.shape[0]))))
    return torch.stack(waves)


class LogMel(nn.Module):
    """waveform (B, T * hop) -> (B, T, M) log-mel, computed exactly as nextmm.data.decoder_media computes the
    audio VAE's data (AudioLDM's: natural log of clamped Slaney-mel STFT magnitudes, frame t centred on sample
    t * hop), so that the vocoder learns to invert what the VAE decodes."""

    def __init__(self, spec: DecoderMediaSpec):
        super().__init__()
        self.frames_per_hop = spec.hop_length
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=spec.sample_rate, n_fft=AUDIO_FFT, hop_length=spec.hop_length, f_min=0.0,
            f_max=spec.sample_rate / 2, n_mels=spec.mel_bins, power=1.0, norm="slaney", mel_scale="slaney",
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = waveform.shape[-1] // self.frames_per_hop
        return torch.log(self.mel(waveform).clamp(min=LOG_FLOOR))[..., :frames].transpose(-1, -2)


def to_pixels(media: torch.Tensor) -> np.ndarray:
    """[-1, 1] (..., 3, H, W) -> uint8 (..., H, W, 3), the layout the pipelines render."""
    return ((media.movedim(-3, -1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------------- training
def random_crop(batch: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random (min(size, H), min(size, W)) window of a (B, C, H, W) batch."""
    height, width = batch.shape[-2:]
    crop_h, crop_w = min(size, height), min(size, width)
    top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
    return batch[..., top : top + crop_h, left : left + crop_w]


def vae_loss(vae: nn.Module, batch: torch.Tensor, kl_weight: float) -> dict[str, torch.Tensor]:
    """L1 reconstruction of a sampled latent's decoding + kl_weight * KL per latent element: batch (B, C, H, W)."""
    posterior = vae.encode(batch).latent_dist
    reconstruction = vae.decode(posterior.sample()).sample
    l1 = (reconstruction - batch).abs().mean()
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return {"loss": l1 + kl_weight * kl, "l1": l1, "kl": kl}


@torch.no_grad()
def encode(vae: nn.Module, data: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds (N, C, h, w) of (N, C_in, H, W) media."""
    posteriors = [vae.encode(chunk).latent_dist for chunk in data.split(batch_size)]
    return torch.cat([p.mean for p in posteriors]), torch.cat([p.std for p in posteriors])


def latent_scale(mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> float:
    """1 / std of latents sampled from the posteriors: Stable Diffusion's scaling_factor, measured."""
    return float(1 / (mean + std * torch.randn(mean.shape, generator=generator).to(mean.device)).std())


def unet_layout(modality: str, latents: torch.Tensor, count: int) -> torch.Tensor:
    """Latents of the VAE inputs -> the UNet's: video frames (N * F, C, h, w) -> clips (N, C, F, h, w)."""
    if modality == "video":
        return latents.unflatten(0, (count, -1)).transpose(1, 2)
    return latents


def latent_batch(mean: torch.Tensor, std: torch.Tensor, phase: DictConfig,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Scene indices and latents sampled from their posteriors: (B, C, h, w), or clips (B, C, F, h, w). For a
    `single_frames` share of the steps, clips give way to batch_size * F single frames (B * F, C, 1, h, w): the
    spatial layers and the text conditioning learn from F times as many scenes at the same cost, as video
    models are trained jointly on images."""
    count = mean.shape[0]
    if mean.ndim == 5 and float(torch.rand((), generator=generator)) < phase.single_frames:
        frames = mean.shape[2]
        index = torch.randint(0, count, (phase.batch_size * frames,), generator=generator)
        frame = torch.randint(0, frames, (len(index),), generator=generator)
        mean, std = mean[index, :, frame, None], std[index, :, frame, None]  # (B * F, C, 1, h, w)
    else:
        index = torch.randint(0, count, (phase.batch_size,), generator=generator)
        mean, std = mean[index], std[index]
    return index, mean + std * torch.randn(mean.shape, generator=generator).to(mean.device)


def conditioning(pipe: DiffusionPipeline, modality: str, texts: list[str]) -> dict[str, torch.Tensor | None]:
    """The UNet's text conditioning computed as the pipeline computes it from `prompt=`, with gradients:
    {"encoder_hidden_states": (B, 77, D)}, or for AudioLDM {"class_labels": (B, P) L2-normalised CLAP embeddings}."""
    device = pipe.unet.device
    if modality == "audio":
        return {"encoder_hidden_states": None, "class_labels": pipe._encode_prompt(texts, device, 1, False)}
    return {"encoder_hidden_states": pipe.encode_prompt(texts, device, 1, False)[0]}


def unet_loss(
    pipe: DiffusionPipeline, noise_scheduler: DDPMScheduler, modality: str, latents: torch.Tensor, texts: list[str],
    snr_gamma: float | None,
) -> dict[str, torch.Tensor]:
    """Min-SNR-weighted noise (or v) prediction error of the UNet on scaled latents (B, C, [F,] h, w)."""
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    predicted = pipe.unet(noisy, timesteps, **conditioning(pipe, modality, texts)).sample
    if noise_scheduler.config.prediction_type == "epsilon":
        target = noise
    else:
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    per_sample = (predicted - target).pow(2).flatten(1).mean(dim=1)
    weights = min_snr_weights(noise_scheduler, timesteps, snr_gamma) if snr_gamma else torch.ones_like(per_sample)
    return {"loss": (weights * per_sample).mean(), "mse": per_sample.mean().detach()}


def caption_batch(scenes: Sequence[dict], modality: str, rng: np.random.Generator, drawn: float,
                  dropout: float) -> list[str]:
    """A caption per scene: "" for a `dropout` share, a freshly drawn training wording for a `drawn` share of the
    rest, else the scene's own."""
    texts = []
    for scene in scenes:
        if rng.random() < dropout:
            texts.append("")
        elif rng.random() < drawn:
            texts.append(captions(scene["concept"], modality, rng))
        else:
            texts.append(scene["captions"][modality])
    return texts


def stft_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss (B, L): L1 between log magnitudes, averaged over STFT_RESOLUTIONS."""
    total = 0.0
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft, device=output.device)
        out, ref = (torch.stft(x, n_fft, hop, window=window, return_complex=True).abs().clamp(min=LOG_FLOOR)
                    for x in (output, target))
        total = total + (out.log() - ref.log()).abs().mean()
    return total / len(STFT_RESOLUTIONS)


def band_loss(output: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """L1 between the log10 energies of BANDS log-spaced bands (B, L) and the band below them, each relative to the
    target's strongest band: low frequencies weigh as much as high ones, and a floor the target does not have costs
    what it should."""
    window = torch.hann_window(BAND_FFT, device=output.device)
    power = [torch.stft(x, BAND_FFT, BAND_FFT // 4, window=window, return_complex=True).abs().pow(2).mean(-1)
             for x in (output, target)]  # (B, F)
    freqs = torch.fft.rfftfreq(BAND_FFT, 1 / sample_rate, device=output.device)
    edges = torch.logspace(math.log10(BAND_RANGE[0]), math.log10(BAND_RANGE[1]), BANDS + 1, device=output.device)
    edges = torch.cat([edges.new_zeros(1), edges])  # and one band below: a DC offset or a rumble costs too
    members = ((freqs[None] >= edges[:-1, None]) & (freqs[None] < edges[1:, None])).float()  # (BANDS, F)
    out, ref = (p @ members.T for p in power)  # (B, BANDS)
    floor = ref.amax(-1, keepdim=True) * BAND_FLOOR
    return ((out + floor).log10() - (ref + floor).log10()).abs().mean()


def vocoder_loss(output: torch.Tensor, waves: torch.Tensor, log_mel: LogMel, sample_rate: int,
                 band_weight: float) -> dict:
    """The vocoder's spectral error on matching segments: output and waves (B, K * hop)."""
    mel_l1 = (log_mel(output) - log_mel(waves)).abs().mean()
    stft = stft_loss(output, waves)
    bands = band_loss(output, waves, sample_rate)
    return {"loss": mel_l1 + stft + band_weight * bands, "mel_l1": mel_l1, "stft": stft, "bands": bands}


class Adversary:
    """HiFi-GAN's multi-period and multi-scale discriminators (nextmm.toyworld.discriminators) with their own AdamW.
    `terms(output, waves)` first updates the discriminators on the detached output, then returns the generator's
    adversarial and feature-matching terms, weighted as `phase.adversarial` says."""

    def __init__(self, settings: DictConfig, device: torch.device):
        self.settings = settings
        self.judge = WaveDiscriminators(settings.periods, settings.scales, settings.channels).to(device)
        self.optimizer = torch.optim.AdamW(self.judge.parameters(), lr=settings.lr, betas=(0.8, 0.99))

    def terms(self, output: torch.Tensor, waves: torch.Tensor) -> dict[str, torch.Tensor]:
        real, _ = self.judge(waves)
        fake, _ = self.judge(output.detach())
        judged = discriminator_loss(real, fake)
        self.optimizer.zero_grad(set_to_none=True)
        judged.backward()
        self.optimizer.step()
        self.judge.requires_grad_(False)  # the generator's terms train the vocoder alone
        with torch.no_grad():
            _, real_maps = self.judge(waves)
        fake, fake_maps = self.judge(output)
        self.judge.requires_grad_(True)
        adversarial, matching = generator_loss(fake), feature_matching(real_maps, fake_maps)
        loss = self.settings.weight * adversarial + self.settings.feature_matching * matching
        return {"loss": loss, "adversarial": adversarial, "feature_matching": matching, "discriminator": judged.detach()}

    def state_dict(self) -> dict:
        """The discriminators and their optimizer, for the vocoder phase's checkpoints."""
        return {"judge": self.judge.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.judge.load_state_dict(state["judge"])
        self.optimizer.load_state_dict(state["optimizer"])


class MelEncoder(nn.Module):
    """The CLAP phase's audio side: the time mean and standard deviation of a (B, 1, T, M) log-mel through an MLP
    to (B, D). Only the text encoder is kept."""

    def __init__(self, mel_bins: int, width: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * mel_bins, width), nn.GELU(), nn.Linear(width, dim))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([mels[:, 0].mean(1), mels[:, 0].std(1)], dim=-1))


def phase_cfg(cfg: DictConfig, phase: str, modality: str) -> DictConfig:
    """The phase's keys, with the modality's own values from `per_modality` where it has them."""
    own = OmegaConf.select(cfg, f"per_modality.{modality}.{phase}", default=None) or {}
    return OmegaConf.merge(cfg[phase], own)


def train_phase(name: str, phase: DictConfig, loss: ModuleLoss, draw: Callable, random: tuple, terms: list[str],
                cfg: DictConfig, accelerator: Accelerator, folder: Path, state: dict | None = None) -> list[float]:
    """One phase on the one loop: AdamW over ``loss``'s trainable parameters at ``phase.lr`` with warmup and
    cosine decay for ``phase.steps`` steps, batches from ``draw()`` (drawing from the modality's ``random``
    streams), checkpoints under ``folder``. A finished phase is loaded from its last checkpoint, RNG states
    included, so what follows draws what it would have. Returns every step's loss."""
    def optimizer_for(module: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in module.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=phase.lr, weight_decay=cfg.optimizer.weight_decay)

    schedule = {"warmup_steps": cfg.optimizer.warmup_steps, "schedule": "cosine", "total_steps": None,
                "max_grad_norm": cfg.optimizer.max_grad_norm}
    checkpoints = Checkpoints(folder, accelerator, cfg.checkpoint.keep_last, ModuleWeights(**loss.trained), cfg)
    result = train_loop(
        accelerator, name=name, loss=loss, batches=RandomBatches(draw, *random), optimizer_for=optimizer_for,
        schedule=schedule, max_steps=phase.steps, checkpoints=checkpoints, checkpoint_every=cfg.checkpoint.every,
        resume=cfg.resume, terms=terms, batch_size=lambda _: BatchSize(phase.batch_size),
        log_every=cfg.logging.every, state=state,
    )
    return result["run_losses"]


def train_modality(modality: str, cfg: DictConfig, scenes: list[dict], root: Path, generator: torch.Generator,
                   rng: np.random.Generator, accelerator: Accelerator) -> tuple[DiffusionPipeline, dict, list[np.ndarray]]:
    """Build and train one decoder pipeline on the accelerator's device, its phases checkpointed under
    <output_dir>/checkpoints/<modality>/<phase>/. Returns it, a report (losses, scaling factor, seconds per phase
    in this invocation) and the real media as the pipeline renders them (uint8 (H, W, 3) or (F, H, W, 3), or
    waveforms (n,))."""
    device = accelerator.device
    pipe = build_pipeline(modality, cfg.decoders[modality])
    named = (cfg.decoders[modality].get("components") or {}).get("vocoder")
    if "vocoder" in cfg.phases and named and type(pipe.vocoder).__name__ != named["class"]:
        # a folder's vocoder of another kind than the config's (Griffin-Lim, toyworld_hifigan): the config's, new
        log.info("%s vocoder: a new %s in place of the folder's %s", modality, named["class"],
                 type(pipe.vocoder).__name__)
        pipe.register_modules(vocoder=build_component("vocoder", named))
    pipe = pipe.to(device)
    decoders = Decoders({modality: cfg.decoders[modality]}, device=device)
    decoders.use(modality, pipe)
    spec = decoder_media_spec(decoders, modality)
    report: dict = {"seconds": {}, "losses": {}}
    folder, random = Path(cfg.output_dir) / CHECKPOINTS / modality, (generator, rng)

    # 1. the media, in the VAE's layout
    start = time.perf_counter()
    media = load_media(spec, [root / scene[modality] for scene in scenes], cfg.data.num_workers)
    waves = load_waveforms(spec, [root / scene[modality] for scene in scenes]) if modality == "audio" else None
    real = list(waves.numpy()) if modality == "audio" else list(to_pixels(media))
    media = media.to(device)
    waves = waves.to(device) if waves is not None else None
    vae_data = media.flatten(0, 1) if modality == "video" else media  # frames are images to the VAE
    report["seconds"]["data"] = time.perf_counter() - start
    log.info("%s: %d scenes, VAE data %s", modality, len(scenes), tuple(vae_data.shape))

    # 2. the VAE, then its latents' scale
    phases = set(cfg.phases)
    if "vae" in phases:
        start, phase, vae = time.perf_counter(), phase_cfg(cfg, "vae", modality), pipe.vae
        vae.requires_grad_(True)

        def vae_batch() -> torch.Tensor:  # (B, C, crop, crop)
            index = torch.randint(0, len(vae_data), (phase.batch_size,), generator=generator)
            return random_crop(vae_data[index], phase.crop, generator)

        loss = ModuleLoss(lambda batch: vae_loss(vae, batch, phase.kl_weight), vae=vae)
        report["losses"]["vae"] = train_phase(f"{modality} vae", phase, loss, vae_batch, random, ["loss", "l1", "kl"],
                                              cfg, accelerator, folder / "vae")
        vae.eval().requires_grad_(False)
        latent_mean, latent_std = encode(vae, vae_data, phase.batch_size)
        scale = latent_scale(latent_mean, latent_std, generator)
        vae.register_to_config(scaling_factor=scale)
        report["seconds"]["vae"] = time.perf_counter() - start
        log.info("%s vae: scaling_factor %.4f (latents %s)", modality, scale, tuple(latent_mean.shape[1:]))
    elif "unet" in phases:  # the folder's VAE, as it is
        latent_mean, latent_std = encode(pipe.vae, vae_data, phase_cfg(cfg, "vae", modality).batch_size)
    report["scaling_factor"] = pipe.vae.config.scaling_factor

    # 3. the vocoder (audio): the log-mels the VAE learned back to the waveforms they came from
    if modality == "audio" and "vocoder" in phases and next(pipe.vocoder.parameters(), None) is None:
        log.info("audio vocoder: %s has no weights to train", type(pipe.vocoder).__name__)
    elif modality == "audio" and "vocoder" in phases:
        start, phase, vocoder = time.perf_counter(), phase_cfg(cfg, "vocoder", modality), pipe.vocoder
        log_mel, mels = LogMel(spec).to(device), media[:, 0]  # (N, T, M)
        if vocoder.config.normalize_before:  # SpeechT5HifiGan standardises its input by these buffers
            vocoder.mean.copy_(mels.mean((0, 1)))
            vocoder.scale.copy_(mels.std((0, 1)))
        vocoder.requires_grad_(True)
        segment, hop = min(phase.segment_frames, spec.frames), spec.hop_length
        adversary = Adversary(phase.adversarial, device) if phase.adversarial.weight > 0 else None

        def vocoder_batch() -> tuple[torch.Tensor, torch.Tensor]:  # (B, segment, M) log-mels, (B, segment * hop)
            index = torch.randint(0, len(mels), (phase.batch_size,), generator=generator)
            first = torch.randint(0, spec.frames - segment + 1, (phase.batch_size,), generator=generator)
            mel = torch.stack([mels[i, f : f + segment] for i, f in zip(index.tolist(), first.tolist())])
            wave = torch.stack([waves[i, f * hop : (f + segment) * hop] for i, f in zip(index.tolist(), first.tolist())])
            return mel, wave

        def vocoder_terms(batch: tuple[torch.Tensor, torch.Tensor]) -> dict:
            mel, wave = batch
            output = vocoder(mel)  # (B, segment * hop)
            terms = vocoder_loss(output, wave, log_mel, vocoder.config.sampling_rate, phase.band_weight)
            if adversary is None:
                return terms
            gan = adversary.terms(output, wave)
            return {**terms, **gan, "loss": terms["loss"] + gan["loss"]}

        names = ["loss", "mel_l1", "stft", "bands"]
        names += ["adversarial", "feature_matching", "discriminator"] if adversary is not None else []
        report["losses"]["vocoder"] = train_phase(
            "audio vocoder", phase, ModuleLoss(vocoder_terms, vocoder=vocoder), vocoder_batch, random, names, cfg,
            accelerator, folder / "vocoder", state={"adversary": adversary} if adversary is not None else None)
        vocoder.eval().requires_grad_(False)
        report["seconds"]["vocoder"] = time.perf_counter() - start

    # 4. the CLAP text encoder (audio), against the log-mels of the scenes its captions describe
    if modality == "audio" and "clap" in phases:
        start, phase, text_encoder = time.perf_counter(), phase_cfg(cfg, "clap", modality), pipe.text_encoder
        index_of = {c: i for i, c in enumerate(sorted({s["concept"] for s in scenes}))}
        labels = torch.tensor([index_of[s["concept"]] for s in scenes], device=device)
        mel_encoder = MelEncoder(spec.mel_bins, phase.width, text_encoder.config.projection_dim).to(device)
        info_nce = InfoNCE(phase.temperature, learnable=False)
        text_encoder.requires_grad_(True)

        def clap_batch() -> tuple[torch.Tensor, list[str]]:  # scene indices (B,), their captions
            index = torch.randint(0, len(scenes), (phase.batch_size,), generator=generator)
            return index, caption_batch([scenes[i] for i in index.tolist()], modality, rng, phase.drawn_captions, 0.0)

        def clap_terms(batch: tuple[torch.Tensor, list[str]]) -> dict:
            index, texts = batch
            text = conditioning(pipe, modality, texts)["class_labels"]
            return {"loss": info_nce(text, mel_encoder(media[index]), labels[index])}

        loss = ModuleLoss(clap_terms, text_encoder=text_encoder, mel_encoder=mel_encoder)
        report["losses"]["clap"] = train_phase("audio clap", phase, loss, clap_batch, random, ["loss"], cfg,
                                               accelerator, folder / "clap")
        text_encoder.eval().requires_grad_(False)
        report["seconds"]["clap"] = time.perf_counter() - start

    # 5. the UNet (and the text encoder, where it trains), on the scaled latents
    if "unet" in phases:
        start, phase = time.perf_counter(), phase_cfg(cfg, "unet", modality)
        scale = pipe.vae.config.scaling_factor
        latent_mean = unet_layout(modality, latent_mean, len(scenes)) * scale
        latent_std = unet_layout(modality, latent_std, len(scenes)) * scale
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # the decoder's training noise schedule
        trained = {"unet": pipe.unet, "text_encoder": pipe.text_encoder} if phase.train_text_encoder else {"unet": pipe.unet}
        for module in trained.values():
            module.requires_grad_(True)

        def unet_batch() -> tuple[torch.Tensor, list[str]]:  # latents (B, C, [F,] h, w), their captions
            index, latents = latent_batch(latent_mean, latent_std, phase, generator)
            texts = caption_batch([scenes[i] for i in index.tolist()], modality, rng, phase.drawn_captions,
                                  phase.caption_dropout)
            return latents, texts

        loss = ModuleLoss(lambda batch: unet_loss(pipe, noise_scheduler, modality, *batch, phase.snr_gamma), **trained)
        report["losses"]["unet"] = train_phase(f"{modality} unet", phase, loss, unet_batch, random, ["loss", "mse"],
                                               cfg, accelerator, folder / "unet")
        for module in trained.values():
            module.eval().requires_grad_(False)
        report["seconds"]["unet"] = time.perf_counter() - start
    return pipe, report, real


# ------------------------------------------------------------------------------------------ quality check
@torch.no_grad()
def quality_check(modality: str, folder: Path, decoder_cfg: DictConfig, real: list, concepts: list[str],
             prompts: dict[str, str], cfg: DictConfig, device: torch.device) -> dict:
    """Render each concept's caption from the written folder through Decoders and classify the media by the
    nearest centroid of the real media's features: {"accuracy", "per_concept", "render_seconds"}."""
    settings = {k: v for k, v in plain(decoder_cfg).items() if k != "components"}
    decoders = Decoders({modality: {**settings, "path": str(folder)}}, device=device)
    features = FEATURES[modality]
    classifier = NearestCentroid().fit(np.stack([features(x) for x in real]), np.array(concepts))
    steps, guidance = int(decoder_cfg.num_inference_steps), float(decoder_cfg.guidance_scale)
    generator = torch.Generator().manual_seed(cfg.seed)
    per_concept = {}
    for concept in tqdm(sorted(set(concepts)), desc=f"{modality} quality check", leave=False):
        texts = [prompts[concept]] * cfg.evaluation.samples_per_concept
        media = decoders.render(modality, decoders.encode_text(modality, texts), num_inference_steps=steps,
                                guidance_scale=guidance, generator=generator, progress=False)
        predicted = classifier.predict(np.stack([features(np.asarray(m)) for m in media]))
        per_concept[concept] = float((predicted == concept).mean())
    start = time.perf_counter()  # one medium, as a turn renders it (the text encoding is the projector's there)
    decoders.render(modality, decoders.encode_text(modality, [prompts[concepts[0]]]), num_inference_steps=steps,
                    guidance_scale=guidance, generator=generator, progress=False)
    return {"accuracy": float(np.mean(list(per_concept.values()))), "per_concept": per_concept,
            "render_seconds": time.perf_counter() - start}


# -------------------------------------------------------------------------------------------------- recipe
def modality_random(seed: int, modality: str) -> tuple[torch.Generator, np.random.Generator]:
    """The random streams of one modality's training (torch's global one reseeded too: posterior samples and
    dropout draw from it), derived from the seed and the modality alone: a decoder comes out the same whichever
    others are trained with it, before it or not at all."""
    state = np.random.SeedSequence([seed, MODALITIES.index(modality)]).generate_state(2)
    torch.manual_seed(int(state[0]))
    return torch.Generator().manual_seed(int(state[0])), np.random.default_rng(int(state[1]))


def train(cfg: DictConfig) -> dict:
    """Train and write each modality's decoder, check it, write metrics.json; returns the metrics and folders."""
    for key in ("data_root", "output_dir"):
        if OmegaConf.is_missing(cfg, key) or not cfg[key]:
            raise ConfigError(f"set {key}=<folder>")
    modalities = list(cfg.modalities)
    if not modalities or set(modalities) - set(MODALITIES):
        raise ConfigError(f"modalities={modalities}: use a non-empty list of {', '.join(MODALITIES)}")
    if missing := [m for m in modalities if m not in cfg.decoders]:
        raise ConfigError(f"no decoder config for {missing} in decoders")
    phases = list(cfg.phases)
    if not phases or set(phases) - set(PHASES):
        raise ConfigError(f"phases={phases}: use a non-empty list of {', '.join(PHASES)}")
    if set(phases) != set(PHASES) and (fresh := [m for m in modalities if not cfg.decoders[m].get("path")]):
        raise ConfigError(f"phases={phases} leaves parts untrained: set decoders.{fresh[0]}.path=<a trained "
                          f"{fresh[0]} decoder folder> to start from, or train every phase")
    root, output_dir = Path(cfg.data_root), Path(cfg.output_dir)
    scenes = load_scenes(root)
    concepts = [scene["concept"] for scene in scenes]
    accelerator = start_run(cfg, STAGE)
    if accelerator.num_processes > 1:  # its batches are not shared out: every process would train on the same
        raise ConfigError(f"{STAGE} runs in one process (CUDA when present); start it without accelerate launch")
    device = accelerator.device  # CUDA when present unless device=cpu
    log.info("training on %s", device)
    output_dir.mkdir(parents=True, exist_ok=True)
    with staged_file(output_dir / "config.yaml") as path:
        OmegaConf.save(cfg, path, resolve=True)

    metrics, folders = {}, {}
    for modality in modalities:
        folders[modality] = output_dir / modality
        finished = output_dir / CHECKPOINTS / modality / FINISHED  # its folder written and checked
        if cfg.resume and finished.is_file() and folders[modality].is_dir():
            metrics[modality] = json.loads(finished.read_text(encoding="utf-8"))
            log.info("%s: finished in the run resumed (%s)", modality, folders[modality])
            continue
        generator, rng = modality_random(cfg.seed, modality)
        pipe, report, real = train_modality(modality, cfg, scenes, root, generator, rng, accelerator)
        with staged_folder(folders[modality]) as staging:
            pipe.save_pretrained(staging, safe_serialization=True)
        log.info("wrote %s (decoders.%s.path=%s)", folders[modality], modality, folders[modality])
        start = time.perf_counter()
        quality = quality_check(modality, folders[modality], cfg.decoders[modality], real, concepts,
                           concept_captions(root, sorted(set(concepts)), modality), cfg, device)
        report["seconds"]["quality_check"] = time.perf_counter() - start
        log.info("%s: concept accuracy %.3f (%s), one medium renders in %.2f s", modality, quality["accuracy"],
                 " ".join(f"{c} {a:.2f}" for c, a in quality["per_concept"].items()), quality["render_seconds"])
        report["losses"] = {k: {"first": v[0], "last": v[-1]} for k, v in report["losses"].items() if v}
        metrics[modality] = {**quality, **report}
        with staged_file(finished) as path:
            path.write_text(json.dumps(metrics[modality], indent=1) + "\n", encoding="utf-8")

    with staged_file(output_dir / "metrics.json") as path:
        path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    log.info("concept accuracy: %s", " ".join(f"{m} {v['accuracy']:.3f}" for m, v in metrics.items()))
    accelerator.end_training()
    return {"metrics": metrics, "folders": folders}


def main(cfg: DictConfig) -> None:
    train(cfg)
