"""Readers for the benchmark sets in the formats their publishers ship (docs/real_weights.md says where to get
each and how to lay it out). Each returns ``Item``s: one medium and its reference captions.

    coco       captions_<split>.json: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]};
               image files in ``media``/<file_name>
    audiocaps  <split>.csv with the columns audiocap_id,youtube_id,start_time,caption (one row per caption);
               audio files in ``media``/ named by ``file_name`` (default "{youtube_id}.wav")
    msrvtt     <split>_videodatainfo.json: {"videos": [{"video_id", "split"}], "sentences": [{"video_id",
               "caption"}]}; video files in ``media``/<video_id>.mp4
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nextmm.errors import ConfigError


@dataclass(frozen=True)
class Item:
    """One medium of a benchmark set and every reference caption of it, in the file's order."""

    id: str
    media: Path
    captions: list[str]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = {}
    for key, caption in pairs:
        captions.setdefault(key, []).append(caption.strip())
    return captions


def read_coco(annotations: Path, media: Path, **_) -> list[Item]:
    """COCO captions: one item per image that has captions, in the order of ``images``."""
    data = _read_json(annotations)
    try:
        captions = _grouped([(str(a["image_id"]), a["caption"]) for a in data["annotations"]])
        return [Item(str(image["id"]), media / image["file_name"], captions[str(image["id"])])
                for image in data["images"] if str(image["id"]) in captions]
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{annotations} is not a COCO captions file (missing {error}): give captions_<split>.json")


def read_audiocaps(annotations: Path, media: Path, file_name: str = "{youtube_id}.wav", **_) -> list[Item]:
    """AudioCaps: one item per YouTube clip (its rows' captions together), in first-seen order."""
    try:
        with annotations.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"cannot read {annotations}: {error}") from None
    expected = {"audiocap_id", "youtube_id", "start_time", "caption"}
    if not rows or not expected <= set(rows[0]):
        raise ConfigError(f"{annotations} is not an AudioCaps csv: its header must hold {','.join(sorted(expected))}")
    captions = _grouped([(row["youtube_id"], row["caption"]) for row in rows])
    first = {row["youtube_id"]: row for row in reversed(rows)}  # each clip's first row names its file
    return [Item(clip, media / file_name.format(**first[clip]), texts) for clip, texts in captions.items()]


def read_msrvtt(annotations: Path, media: Path, split: str = "test", **_) -> list[Item]:
    """MSR-VTT: one item per video of ``split``, in the order of ``videos``."""
    data = _read_json(annotations)
    try:
        captions = _grouped([(s["video_id"], s["caption"]) for s in data["sentences"]])
        return [Item(v["video_id"], media / f"{v['video_id']}.mp4", captions[v["video_id"]])
                for v in data["videos"] if v.get("split", split) == split and v["video_id"] in captions]
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{annotations} is not an MSR-VTT videodatainfo file (missing {error})")


READERS: dict[str, Callable[..., list[Item]]] = {"coco": read_coco, "audiocaps": read_audiocaps,
                                                 "msrvtt": read_msrvtt}


def load_items(data_root: str | Path, spec: Mapping) -> list[Item]:
    """The items a task's ``data`` section describes, under ``data_root``; a one-line error when absent."""
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data_root={data_root} is not a folder: give the folder laid out as docs/real_weights.md "
                          "says (Reproducing the paper's tables)")
    annotations, media = root / spec["annotations"], root / spec["media"]
    for key, what in (("annotations", "annotation file"), ("media", "media folder")):
        if not (root / spec[key]).exists():
            raise ConfigError(f"data_root={data_root} has no {what} {spec[key]} (docs/real_weights.md: Reproducing "
                              "the paper's tables)")
    if spec["format"] not in READERS:
        raise ConfigError(f"data format {spec['format']!r}: choose one of {', '.join(READERS)}")
    options = {key: value for key, value in spec.items() if key in ("split", "file_name")}
    items = READERS[spec["format"]](annotations, media, **options)
    if not items:
        raise ConfigError(f"{annotations} lists no captioned media")
    return items


def pick(items: Sequence[Item], count: int | None, seed: int) -> list[Item]:
    """``count`` items drawn without replacement by ``seed`` (all, in order, when count is None or larger)."""
    if count is None or count >= len(items):
        return list(items)
    order = np.random.default_rng(seed).permutation(len(items))[:count]
    return [items[i] for i in sorted(order)]
