"""Writing a turn to files a person can open: PNG images, 16 kHz WAV audio, H.264 MP4 video.

A turn's files are written into a new folder that then takes the output folder's place whole, so an
interrupted run or a full disk leaves the complete turn or nothing, never two turns' files mixed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile
from moviepy import AudioFileClip, ImageSequenceClip

from nextmm.atomic import disk_full, staged_folder
from nextmm.errors import UserError
from nextmm.inference.conversation import Turn

RESULT_FILE = "result.json"
FILE_TYPES = {"image": "png", "audio": "wav", "video": "mp4"}


def media_path(output_dir: str | Path, modality: str, index: int) -> Path:
    """Where a turn's ``index``-th output of ``modality`` is written, e.g. ``<output_dir>/video_0.mp4``."""
    return Path(output_dir) / f"{modality}_{index}.{FILE_TYPES[modality]}"


def write_turn(turn: Turn, output_dir: str | Path, *, prompt: str, model: str, seed: int,
               timings_s: Mapping[str, float] | None = None) -> Path:
    """Write the turn's media and ``result.json`` into ``output_dir``, whole; returns the result file's path.

    The files are written into a new folder beside ``output_dir``, which then takes its place (an empty or
    missing ``output_dir``; ``claimed_folder`` refuses one that holds files unless told to replace it), so a
    folder holds one turn or nothing. A video of a turn that also produced audio gets the first audio as its
    soundtrack.
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    written: list[dict] = []
    with staged_folder(output_dir) as staging:
        try:
            _write_files(turn, staging, written)
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
            text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
            (staging / RESULT_FILE).write_text(text, encoding="utf-8")
        except Exception as error:
            no_space = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
            if not no_space and not disk_full(staging):
                raise
            # a full disk, in whatever words the writing library used (libsndfile's "System error.", ffmpeg's
            # broken pipe): said as one, naming the folder rather than the temporary one that goes with the error
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output_dir)) from error
    return output_dir / RESULT_FILE


def _write_files(turn: Turn, staging: Path, written: list[dict]) -> None:
    """Each of the turn's media into ``staging``, listed in ``written`` as it is written."""
    for modality, index in turn.outputs:
        path = media_path(staging, modality, index)
        item = turn.media(modality)[index]
        if modality == "image":
            item.save(path, format="PNG")
        elif modality == "audio":
            soundfile.write(path, item, turn.sample_rate, format="WAV", subtype="PCM_16")
        else:
            soundtrack = staging / "audio_0.wav" if turn.audios else None
            if soundtrack is not None and not soundtrack.exists():
                soundfile.write(soundtrack, turn.audios[0], turn.sample_rate, format="WAV", subtype="PCM_16")
            write_video(path, item, turn.fps, soundtrack)
        written.append({"modality": modality, "path": path.name})


@contextmanager
def claimed_folder(output_dir: str | Path, *, overwrite: bool) -> Iterator[Path]:
    """Hold ``output_dir`` for this process while the block runs, checked before any work.

    Refused with a UserError when it is a file, cannot be written, holds files (unless ``overwrite``, after
    which ``write_turn`` replaces it whole), or is held by another run: an exclusive lock on
    ``.<name>.lock`` beside it keeps two writers apart.
    """
    target = Path(output_dir)
    if target.exists() and not target.is_dir():
        raise UserError(f"output_dir={target} is a file: give a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise UserError(f"output_dir={target} already holds files: give a new or empty folder, or overwrite=true "
                        "to replace it whole")
    lock_path = target.parent / f".{target.name}.lock"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "w")  # noqa: SIM115 (held open until the block ends)
    except OSError as error:
        raise UserError(f"cannot write output_dir={target}: {error.strerror}; give a folder you can write") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise UserError(f"output_dir={target} is being written by another run: give another folder, or wait "
                        "for it to finish") from None
    try:
        yield target
    finally:
        lock_path.unlink(missing_ok=True)
        lock.close()


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
