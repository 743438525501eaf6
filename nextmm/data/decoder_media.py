"""Target media in the form each decoder's VAE takes, for the optional denoising loss.

    image -> (3, H, W)      in [-1, 1], short side scaled to H, centre crop (Stable Diffusion)
    video -> (F, 3, H, W)   F frames spread evenly over the clip, each as an image (Zeroscope)
    audio -> (1, T, M)      log-magnitude mel spectrogram, T = seconds * rate / hop, M = vocoder mel bins (AudioLDM)

Sizes come from a `DecoderMediaSpec`, built once in the main process from the loaded pipeline, so the
DataLoader workers that call `load_decoder_media` never touch a pipeline.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import soundfile
import torch
import torchaudio
from PIL import Image
from torchvision import transforms

from nextmm.errors import MediaError

AUDIO_FFT = 1024  # AudioLDM's STFT: 1024-point window, hop = the vocoder's upsampling (160 at 16 kHz)
LOG_FLOOR = 1e-5


@dataclass(frozen=True)
class DecoderMediaSpec:
    modality: str
    height: int = 0  # image, video
    width: int = 0
    num_frames: int = 0  # video
    sample_rate: int = 0  # audio
    frames: int = 0  # audio: mel frames T
    mel_bins: int = 0
    hop_length: int = 0


def decoder_media_spec(decoders, modality: str) -> DecoderMediaSpec:
    """Sizes from the decoder config, else from the pipeline's own defaults (as its __call__ computes them)."""
    pipe, cfg = decoders.pipeline(modality), decoders.cfg[modality]
    scale = pipe.vae_scale_factor
    if modality == "audio":
        vocoder = pipe.vocoder.config
        hop = math.prod(vocoder.upsample_rates)
        seconds = cfg.get("audio_seconds") or pipe.unet.config.sample_size * scale * hop / vocoder.sampling_rate
        frames = math.ceil(int(seconds * vocoder.sampling_rate / hop) / scale) * scale
        return DecoderMediaSpec("audio", sample_rate=vocoder.sampling_rate, frames=frames,
                                mel_bins=vocoder.model_in_dim, hop_length=hop)
    size = pipe.unet.config.sample_size * scale
    return DecoderMediaSpec(
        modality,
        height=int(cfg.get("height") or size),
        width=int(cfg.get("width") or size),
        num_frames=int(cfg.get("num_frames") or 16) if modality == "video" else 0,
    )


def load_decoder_media(spec: DecoderMediaSpec, path: str | os.PathLike) -> torch.Tensor:
    """Read one target file for ``spec``; raises MediaError (one line, naming the file) on any failure."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(f"target {spec.modality} file not found: {path}")
    try:
        if spec.modality == "image":
            with Image.open(path) as image:
                return _frame_transform(spec)(image.convert("RGB"))
        if spec.modality == "video":
            return _load_video(spec, path)
        return _load_audio(spec, path)
    except MediaError:
        raise
    except Exception as error:  # decoders raise many types; the user needs the file and the reason
        reason = f"{type(error).__name__}: {error}"
        raise MediaError(f"{path}: cannot read this target {spec.modality} ({reason})") from error


def _frame_transform(spec: DecoderMediaSpec) -> transforms.Compose:
    return transforms.Compose([
        transforms.Resize(min(spec.height, spec.width), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop((spec.height, spec.width)),
        transforms.ToTensor(),
        transforms.Normalize([0.5], [0.5]),
    ])


def _load_video(spec: DecoderMediaSpec, path: str) -> torch.Tensor:
    import imageio_ffmpeg

    count, _ = imageio_ffmpeg.count_frames_and_secs(path)
    if count <= 0:
        raise MediaError(f"{path}: video has no frames")
    wanted = [int(i) for i in np.linspace(0, count - 1, spec.num_frames).round()]
    reader = imageio_ffmpeg.read_frames(path, output_params=["-fps_mode", "passthrough"])
    frames: dict[int, Image.Image] = {}
    try:
        meta = next(reader)
        width, height = meta["size"]
        for index, frame in enumerate(reader):
            if index in wanted:
                frames[index] = Image.fromarray(np.frombuffer(frame, dtype=np.uint8).reshape(height, width, 3))
            if index >= wanted[-1]:
                break
    finally:
        reader.close()
    if len(frames) < len(set(wanted)):
        raise MediaError(f"{path}: video ended before its {count} counted frames")
    transform = _frame_transform(spec)
    return torch.stack([transform(frames[i]) for i in wanted])  # (F, 3, H, W)


def _load_audio(spec: DecoderMediaSpec, path: str) -> torch.Tensor:
    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    waveform = torch.from_numpy(samples.mean(axis=1))
    if rate != spec.sample_rate:
        waveform = torchaudio.functional.resample(waveform, rate, spec.sample_rate)
    length = spec.frames * spec.hop_length
    waveform = torch.nn.functional.pad(waveform[:length], (0, max(0, length - waveform.shape[0])))
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=spec.sample_rate,
        n_fft=AUDIO_FFT,
        hop_length=spec.hop_length,
        f_min=0.0,
        f_max=spec.sample_rate / 2,
        n_mels=spec.mel_bins,
        power=1.0,
        norm="slaney",
        mel_scale="slaney",
    )(waveform)  # (M, T + 1)
    return torch.log(mel.clamp(min=LOG_FLOOR))[:, : spec.frames].T.unsqueeze(0)  # (1, T, M)
