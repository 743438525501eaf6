"""ImageBind's own input preprocessing (imagebind/data.py), on the installed stack.

data.py cannot be imported here (it needs pkg_resources and pytorchvideo, which no longer imports
beside current torchvision), so its arithmetic is rewritten below and checked against data.py's source
in tests/test_preprocess.py. Where data.py calls pytorchvideo (ConstantClipsPerVideoSampler,
UniformTemporalSubsample, ShortSideScale, EncodedVideo's frame selection) the same few lines of
arithmetic are written out with torch.

    image  -> (3, 224, 224)            bicubic short side to 224, centre crop, CLIP-normalised
    audio  -> (3, 1, 128, 204)         3 clips of 2 s at 16 kHz, 128-bin kaldi fbank, normalised
    video  -> (15, 3, 2, 224, 224)     5 clips of 2 s x 2 frames, short side 224, 3 spatial crops
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as TF

from nextmm.errors import MediaError
from nextmm.modality import check_modality

logger = logging.getLogger(__name__)

# data.py: load_and_transform_vision_data / load_and_transform_video_data
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# data.py: load_and_transform_audio_data defaults and waveform2melspec
AUDIO_SAMPLE_RATE = 16000
AUDIO_NUM_MEL_BINS = 128
AUDIO_TARGET_LENGTH = 204
AUDIO_CLIP_DURATION = 2
AUDIO_CLIPS = 3
AUDIO_MEAN = -4.268
AUDIO_STD = 9.138
AUDIO_FRAME_LENGTH_MS = 25
AUDIO_FRAME_SHIFT_MS = 10

# data.py: load_and_transform_video_data (frames per clip = UniformTemporalSubsample(clip_duration))
VIDEO_CLIP_DURATION = 2
VIDEO_CLIPS = 5
VIDEO_FRAMES_PER_CLIP = 2
VIDEO_SPATIAL_CROPS = 3

# What an input may be before it is refused: beyond these, preprocessing would allocate gigabytes for a file of a
# few bytes (a 12000 x 1 picture scales to 2.7 M x 224) or read an hour of sound to use 6 s of it.
MAX_IMAGE_PIXELS = 50_000_000
MAX_ASPECT_RATIO = 20  # long side / short side
MAX_AUDIO_SECONDS = 3600

SUPPORTED_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"),
    "audio": (".wav", ".flac", ".ogg", ".mp3"),  # what libsndfile (soundfile) decodes
    "video": (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"),  # what ffmpeg decodes
}

class _UnusableMedia(ValueError):
    """Well-formed input with nothing to embed (too short, no frames); load_media names the file."""


_image_transform = transforms.Compose(
    [
        transforms.Resize(IMAGE_SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(IMAGE_SIZE),
        transforms.ToTensor(),
        transforms.Normalize(mean=CLIP_MEAN, std=CLIP_STD),
    ]
)


def load_media(modality: str, path: str | os.PathLike) -> torch.Tensor:
    """Read one media file into ImageBind's input layout (see the module docstring for shapes).

    Raises MediaError (one line, naming the file) when the file is missing, has an extension this
    modality does not read, cannot be decoded, or holds no usable content.
    """
    return load_media_with(modality, path, _LOADERS[modality])


def load_media_with(modality: str, path: str | os.PathLike, loader) -> Any:
    """`loader(path)` after load_media's checks, with its errors turned into one-line MediaErrors."""
    check_modality(modality)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise MediaError(f"{path} is a folder, not a file: give the {modality} file's path")
    if not os.path.isfile(path):
        raise MediaError(f"{modality} file not found: {path} (check the path)")
    extension = os.path.splitext(path)[1].lower()
    if extension not in SUPPORTED_EXTENSIONS[modality]:
        raise MediaError(
            f"{path}: unsupported {modality} file type {extension or '(none)'!r}; "
            f"use one of {' '.join(SUPPORTED_EXTENSIONS[modality])}"
        )
    try:
        return loader(path)
    except MediaError:
        raise
    except _UnusableMedia as err:  # decoded, but nothing ImageBind can use (e.g. 10 ms of audio)
        raise MediaError(f"{path}: {err}") from err
    except Exception as err:  # decoders raise many types; the user needs the file and the reason
        reason = _last_line(str(err)) or type(err).__name__
        raise MediaError(
            f"{path}: cannot decode this {modality} file ({reason}); check that it is a valid, "
            f"complete {extension} file"
        ) from err


def image_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image -> (3, 224, 224): RGB, bicubic short side to 224, centre crop, CLIP-normalised."""
    check_image_size(*image.size)
    return _image_transform(image.convert("RGB"))


def check_image_size(width: int, height: int) -> None:
    """An image preprocessing can scale: not empty, not too large, not a sliver (read from the header, before
    decoding)."""
    if width < 1 or height < 1:
        raise _UnusableMedia(f"the image is {width} x {height} pixels: give a picture with content")
    if width * height > MAX_IMAGE_PIXELS:
        raise _UnusableMedia(f"the image is {width} x {height} pixels, more than {MAX_IMAGE_PIXELS:,}: scale it down")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise _UnusableMedia(f"the image is {width} x {height} pixels, longer than {MAX_ASPECT_RATIO}:1 on one side: "
                             "crop it")


def audio_tensor(waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    """A waveform (samples,) or (channels, samples), floats in [-1, 1] -> (3, 1, 128, 204).

    As in data.py: resampled to 16 kHz, cut into 3 clips of 2 s spread evenly over the duration
    (overlapping or repeated when shorter than 6 s), each a 128-bin fbank padded or cut to 204
    frames and normalised. Like data.py, multi-channel audio yields its first channel's fbank
    (kaldi.fbank reads channel 0), after the mean over all channels is removed.
    """
    waveform = torch.as_tensor(waveform)
    if not waveform.is_floating_point():
        raise ValueError(f"waveform must hold floats in [-1, 1], got {waveform.dtype} (scale integer PCM first)")
    waveform = waveform.to(torch.float32, copy=True)  # modified in place below
    if not torch.isfinite(waveform).all():
        raise _UnusableMedia("the sound holds NaN or infinite samples: give samples in [-1, 1]")
    if waveform.ndim == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.ndim != 2 or waveform.shape[0] > waveform.shape[1]:
        raise ValueError(f"waveform must be (samples,) or (channels, samples), got {tuple(waveform.shape)}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or not 0 < sample_rate < math.inf:
        raise ValueError(f"sample_rate={sample_rate!r}: give the samples per second, a number above 0")
    if sample_rate != AUDIO_SAMPLE_RATE:
        waveform = torchaudio.functional.resample(waveform, orig_freq=sample_rate, new_freq=AUDIO_SAMPLE_RATE)
    num_samples = waveform.shape[1]
    if num_samples < AUDIO_SAMPLE_RATE * AUDIO_FRAME_LENGTH_MS // 1000:
        raise _UnusableMedia(
            f"audio is {num_samples / AUDIO_SAMPLE_RATE * 1000:.1f} ms long, shorter than one "
            f"{AUDIO_FRAME_LENGTH_MS} ms fbank frame"
        )

    clips = []
    for start, end in clip_timepoints(num_samples / AUDIO_SAMPLE_RATE, AUDIO_CLIP_DURATION, AUDIO_CLIPS):
        # A view, and waveform_to_fbank removes its mean in place, as data.py does: where clips
        # overlap, a later clip sees samples already shifted by an earlier clip's mean. Kept so the
        # numbers equal ImageBind's pipeline; the effect is a tiny DC offset.
        clip = waveform[:, int(start * AUDIO_SAMPLE_RATE) : int(end * AUDIO_SAMPLE_RATE)]
        fbank = waveform_to_fbank(clip, AUDIO_SAMPLE_RATE, AUDIO_NUM_MEL_BINS, AUDIO_TARGET_LENGTH)
        clips.append(TF.normalize(fbank, mean=[AUDIO_MEAN], std=[AUDIO_STD]))  # (1, 128, 204)
    return torch.stack(clips)  # (3, 1, 128, 204)


def waveform_to_fbank(waveform: torch.Tensor, sample_rate: int, num_mel_bins: int, target_length: int) -> torch.Tensor:
    """data.py's waveform2melspec: (channels, samples) -> (1, num_mel_bins, target_length).

    Removes the waveform's mean IN PLACE (as data.py does).
    """
    waveform -= waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform,
        htk_compat=True,
        sample_frequency=sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=num_mel_bins,
        dither=0.0,
        frame_length=AUDIO_FRAME_LENGTH_MS,
        frame_shift=AUDIO_FRAME_SHIFT_MS,
    ).transpose(0, 1)  # (num_mel_bins, frames)
    num_frames = fbank.shape[1]
    if abs(target_length - num_frames) / num_frames > 0.2:
        logger.debug("audio clip has %d fbank frames; padded or cut to %d", num_frames, target_length)
    if num_frames < target_length:
        fbank = F.pad(fbank, (0, target_length - num_frames), mode="constant", value=0)
    else:
        fbank = fbank[:, :target_length]
    return fbank.unsqueeze(0)  # (1, num_mel_bins, target_length)


def video_tensor(frames: np.ndarray | torch.Tensor, fps: float) -> torch.Tensor:
    """Decoded frames (F, H, W, 3) uint8 at `fps` -> (15, 3, 2, 224, 224).

    As in data.py: 5 clips of 2 s spread evenly over the duration F / fps (overlapping when the
    video is shorter than 10 s), 2 frames uniformly sampled from each, short side scaled to 224,
    CLIP-normalised, 3 spatial crops (left/top, centre, right/bottom) per clip, clip-major.
    """
    frames = torch.as_tensor(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be (F, H, W, 3) uint8, got {tuple(frames.shape)} {frames.dtype}")
    clips = [frames[indices] for indices in video_frame_indices(frames.shape[0], fps)]
    return video_clips_tensor(clips)


def video_frame_indices(num_frames: int, fps: float) -> list[torch.Tensor]:
    """Which decoded frames data.py feeds ImageBind: one (2,) index tensor per clip (5 clips).

    pytorchvideo's EncodedVideoDecord takes the frames [ceil(fps * start), ceil(fps * end)) of each
    clip (duration = num_frames / fps); UniformTemporalSubsample then picks
    linspace(0, n - 1, 2).long() among those.
    """
    if num_frames <= 0 or not fps > 0:
        raise _UnusableMedia(f"video has {num_frames} frames at {fps} fps: nothing to sample")
    per_clip = []
    for start, end in clip_timepoints(num_frames / fps, VIDEO_CLIP_DURATION, VIDEO_CLIPS):
        first = math.ceil(fps * start)  # float * Fraction -> float, as in pytorchvideo
        stop = min(math.ceil(fps * end), num_frames)
        if stop <= first:
            raise _UnusableMedia(f"video clip [{float(start):.3f} s, {float(end):.3f} s) holds no frame")
        picks = torch.linspace(0, stop - first - 1, VIDEO_FRAMES_PER_CLIP).long()
        per_clip.append(first + picks)
    return per_clip


def clip_timepoints(duration: float, clip_duration: float, clips: int) -> list[tuple[Fraction, Fraction]]:
    """(start, end) seconds of each clip, as pytorchvideo's ConstantClipsPerVideoSampler gives them.

    Starts are spread evenly over [0, duration - clip_duration) (all 0 for a short input); ends may
    pass the end of the input, which then just has fewer samples in that clip. Exact Fractions,
    like pytorchvideo, so int()/ceil() of them land on the same sample and frame indices.
    """
    step = Fraction(max(duration - clip_duration, 0)) / clips
    return [(step * i, step * i + clip_duration) for i in range(clips)]


def video_clips_tensor(clips: list[torch.Tensor]) -> torch.Tensor:
    """Clips of (2, H, W, 3) uint8 frames -> (len(clips) * 3, 3, 2, 224, 224): scaled, normalised, 3 crops each."""
    mean = torch.tensor(CLIP_MEAN)[:, None, None, None]
    std = torch.tensor(CLIP_STD)[:, None, None, None]
    crops = []
    for clip in clips:
        video = clip.permute(3, 0, 1, 2).float() / 255.0  # (3, T, H, W), data.py's order of steps
        video = _short_side_scale(video, IMAGE_SIZE)
        video = (video - mean) / std
        crops.extend(_spatial_crops(video, IMAGE_SIZE))
    return torch.stack(crops)


def _short_side_scale(video: torch.Tensor, size: int) -> torch.Tensor:
    """pytorchvideo's short_side_scale: (C, T, H, W) -> short side `size`, bilinear, no antialias."""
    _, _, height, width = video.shape
    if width < height:
        new_height, new_width = int(math.floor(height / width * size)), size
    else:
        new_height, new_width = size, int(math.floor(width / height * size))
    return F.interpolate(video, size=(new_height, new_width), mode="bilinear", align_corners=False)


def _spatial_crops(video: torch.Tensor, size: int) -> list[torch.Tensor]:
    """data.py's SpatialCrop(num_crops=3): start, centre and end crops along the long side."""
    height, width = video.shape[-2:]
    crops = []
    for spatial_idx in range(VIDEO_SPATIAL_CROPS):
        y_offset = int(math.ceil((height - size) / 2))
        x_offset = int(math.ceil((width - size) / 2))
        if spatial_idx != 1:
            if height > width:
                y_offset = 0 if spatial_idx == 0 else height - size
            else:
                x_offset = 0 if spatial_idx == 0 else width - size
        crops.append(video[..., y_offset : y_offset + size, x_offset : x_offset + size])
    return crops


def _load_image(path: str) -> torch.Tensor:
    with Image.open(path) as image:  # reads the header only: the size is checked before decoding
        check_image_size(*image.size)
        return image_tensor(image)


def _load_audio(path: str) -> torch.Tensor:
    import soundfile  # torchaudio.load needs torchcodec from torchaudio 2.9 on

    info = soundfile.info(path)
    if info.duration > MAX_AUDIO_SECONDS:
        raise _UnusableMedia(f"the recording lasts {info.duration:.0f} s, more than {MAX_AUDIO_SECONDS} s: ImageBind "
                             "hears 6 s of it; cut it shorter")
    samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)  # (samples, channels)
    if samples.shape[0] == 0:
        raise MediaError(f"{path}: audio file holds no samples; use a non-empty recording")
    return audio_tensor(samples.T, sample_rate)


def _load_video(path: str) -> torch.Tensor:
    return video_clips_tensor(_decode_clip_frames(path))


def load_video_clip_frames(path: str | os.PathLike) -> list[torch.Tensor]:
    """The decoded frames ImageBind uses from a video file: one (2, H, W, 3) uint8 tensor per clip (5 clips),
    before scaling and cropping (`video_clips_tensor` finishes them). Small enough to keep in memory, so a
    training set decodes each file once. Errors as `load_media`."""
    return load_media_with("video", path, _decode_clip_frames)


def _decode_clip_frames(path: str) -> list[torch.Tensor]:
    """Decode only the frames data.py would use, so a long video never sits in memory whole.

    imageio-ffmpeg (the ffmpeg behind moviepy and imageio) first counts the decoded frames, then
    streams them once with `-fps_mode passthrough`, so indices refer to decoded frames as they do in
    decord (data.py's decoder), not to frames duplicated or dropped to reach a constant rate.
    """
    import imageio_ffmpeg

    if _sound_only(path):
        raise _UnusableMedia("it holds sound but no pictures: give a video file")
    num_frames, _ = imageio_ffmpeg.count_frames_and_secs(path)
    reader = imageio_ffmpeg.read_frames(path, output_params=["-fps_mode", "passthrough"])
    try:
        meta = next(reader)
        fps = float(meta["fps"])
        if num_frames <= 0 or fps <= 0:
            raise MediaError(f"{path}: video has no frames ({num_frames} at {fps} fps); use a non-empty video")
        per_clip = video_frame_indices(num_frames, fps)
        wanted = {int(i) for indices in per_clip for i in indices}
        width, height = meta["size"]
        decoded: dict[int, torch.Tensor] = {}
        for index, frame in enumerate(reader):
            if index in wanted:
                decoded[index] = torch.frombuffer(bytearray(frame), dtype=torch.uint8).view(height, width, 3)
            if len(decoded) == len(wanted):
                break
    finally:
        reader.close()  # stops ffmpeg when we leave early
    if len(decoded) < len(wanted):
        raise MediaError(
            f"{path}: video ended after fewer frames than its {num_frames} counted ones; re-encode it "
            "(e.g. ffmpeg -i in.mp4 out.mp4)"
        )
    return [torch.stack([decoded[int(i)] for i in indices]) for indices in per_clip]


def _sound_only(path: str) -> bool:
    """Whether ffmpeg reads the file's header and finds streams, none of them video (``ffmpeg -i`` lists them)."""
    import subprocess

    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True,
                           text=True, errors="replace", check=False)
    return "Stream #" in probe.stderr and "Video:" not in probe.stderr


_LOADERS = {"image": _load_image, "audio": _load_audio, "video": _load_video}


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
