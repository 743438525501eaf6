"""Writing a turn to files a person can open: PNG images, 16 kHz WAV audio, H.264 MP4 video.

Every file is written under a temporary name and renamed into place, and ``result.json`` comes last,
so an interrupted run never leaves a file that looks complete but is not.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soundfile
from moviepy import AudioFileClip, ImageSequenceClip

from nextmm.atomic import staged_file
from nextmm.inference.generation import Turn

RESULT_FILE = "result.json"
FILE_TYPES = {"image": "png", "audio": "wav", "video": "mp4"}


def media_path(output_dir: str | Path, modality: str, index: int) -> Path:
    """Where a turn's ``index``-th output of ``modality`` is written, e.g. ``<output_dir>/video_0.mp4``."""
    return Path(output_dir) / f"{modality}_{index}.{FILE_TYPES[modality]}"


def write_turn(turn: Turn, output_dir: str | Path, *, prompt: str, model: str, seed: int,
               timings_s: Mapping[str, float] | None = None) -> Path:
    """Write the turn's media and ``result.json`` into ``output_dir``; returns the result file's path.

    A video of a turn that also produced audio gets the first audio as its soundtrack.
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[dict] = []
    for modality, index in turn.outputs:
        path = media_path(output_dir, modality, index)
        item = turn.media(modality)[index]
        if modality == "image":
            _atomic(path, lambda tmp, item=item: item.save(tmp, format="PNG"))
        elif modality == "audio":
            _atomic(path, lambda tmp, item=item: soundfile.write(tmp, item, turn.sample_rate, format="WAV",
                                                                  subtype="PCM_16"))
        else:
            soundtrack = output_dir / "audio_0.wav" if turn.audios else None
            if soundtrack is not None and not soundtrack.exists():
                _atomic(soundtrack, lambda tmp: soundfile.write(tmp, turn.audios[0], turn.sample_rate,
                                                                format="WAV", subtype="PCM_16"))
            _atomic(path, lambda tmp, item=item: write_video(tmp, item, turn.fps, soundtrack))
        written.append({"modality": modality, "path": path.name})
    timings_s = {**(turn.timings_s if timings_s is None else timings_s), "write": time.perf_counter() - start}
    result = {
        "prompt": prompt,
        "text": turn.text,
        "outputs": written,
        "model": model,
        "seed": seed,
        "settings": turn.settings,
        "timings_s": {k: round(v, 4) for k, v in timings_s.items()},
    }
    result_path = output_dir / RESULT_FILE
    _atomic(result_path, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
    return result_path


def write_video(path: str | Path, frames: np.ndarray, fps: float, soundtrack: Path | None = None) -> None:
    """uint8 frames (F, H, W, 3) -> H.264 MP4; odd sizes are padded to even, which players need."""
    frames = even_frames(frames)
    clip = ImageSequenceClip(list(frames), fps=fps)
    audio = None
    with tempfile.TemporaryDirectory() as scratch:
        if soundtrack is not None:
            audio = AudioFileClip(str(soundtrack))
            clip = clip.with_audio(audio.subclipped(0, min(audio.duration, clip.duration)))
        clip.write_videofile(
            str(path),
            codec="libx264",
            audio_codec="aac" if audio is not None else None,
            audio=audio is not None,
            temp_audiofile=str(Path(scratch) / "soundtrack.m4a"),
            pixel_format="yuv420p",
            logger=None,
        )
        clip.close()
        if audio is not None:
            audio.close()


def even_frames(frames: np.ndarray) -> np.ndarray:
    """Pad (F, H, W, 3) by repeating the last row/column so H and W are even."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames, dtype=np.uint8)


def _atomic(path: Path, write) -> None:
    """Run ``write(temp_path)`` and rename the result to ``path`` (nextmm.atomic.staged_file)."""
    with staged_file(path) as staging:
        write(str(staging))
