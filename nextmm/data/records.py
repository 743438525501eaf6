"""Reading the annotation files NExT-GPT trains on into one neutral form: conversations of turns.

Nothing here opens a media file; a record only names its files. Formats (``format:`` in nextmm/conf/data):

    caption_pairs (cc3m, webvid, audiocap)  [{"caption": ..., "image_name" | "video_name" | "audio_name": ...}]
    conversations (llava, t2m, mosit)       [{"conversations": [{"from": "human" | "gpt", "value": ...}], ...}]
        human values hold <image> <audio> <video> where an input goes, files in "image" (LLaVA) or
        "input_image" ...; gpt values hold them where an output goes (signal tokens are put there), its
        caption in "image_captions" ... (a string or a list, in order) or the turn's "caption" with
        "output_modality" (T2M); target media, when there are any, in "output_image" ...
    alpaca                                  [{"instruction": ..., "input": ..., "output": ...}]
    videochat                               [{"video": ..., "QA": [{"i": ..., "q": ..., "a": ...}]}]

A file is a JSON list or JSON lines. A malformed record does not stop a run: it becomes a record with a
``problem``, which the dataset counts as a bad sample.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES

PLACEHOLDER = re.compile(r"<(image|audio|video)>")
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass
class MediaRef:
    modality: str
    path: Path


@dataclass
class OutputRef:
    """A medium the answer produces: its signal tokens are aligned to ``caption``; ``path`` is optional target media."""

    modality: str
    caption: str
    path: Path | None = None


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    text: str  # assistant text keeps <image> <audio> <video> where its outputs go, in the order of ``outputs``
    inputs: list[MediaRef] = field(default_factory=list)
    outputs: list[OutputRef] = field(default_factory=list)


@dataclass
class Record:
    origin: str  # "file.json#12", for warnings
    turns: list[Turn] = field(default_factory=list)
    problem: str | None = None  # set when the record cannot be used; the dataset skips it as bad


@dataclass(frozen=True)
class Source:
    """One annotation file: where it is, its format and its media folders (one folder, or one per modality)."""

    format: str
    annotations: Path
    media: Mapping[str, Path | None]  # None: names are paths as they stand


# ------------------------------------------------------------------------------------------------ files
def load_annotations(path: Path) -> list:
    """A JSON list, or one JSON object per line."""
    if not path.is_file():
        raise ConfigError(f"annotation file not found: {path} (check data.root and the data config's sources)")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON{' lines' if path.suffix == '.jsonl' else ''}: {error}") from None
    if not isinstance(data, list):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}; expected a list of records")
    return data


def read_source(source: Source, *, pairs: str, pair_prompt: str) -> list[Record]:
    """Records of one annotation file; caption pairs become conversations as ``pairs`` says.

    pairs="comprehension": the user shows the medium, the assistant answers the caption (encoder side).
    pairs="generation": the user asks with the caption, the assistant answers with the signal tokens.
    """
    if source.format not in READERS:
        raise ConfigError(f"unknown data format {source.format!r}: use one of {', '.join(sorted(READERS))}")
    reader = READERS[source.format]
    records = []
    for index, raw in enumerate(load_annotations(source.annotations)):
        origin = f"{source.annotations.name}#{index}"
        if not isinstance(raw, dict):
            records.append(Record(origin, problem=f"record is a {type(raw).__name__}, not an object"))
            continue
        try:
            turns = reader(raw, source, pairs=pairs, pair_prompt=pair_prompt)
        except BadRecord as error:
            records.append(Record(origin, problem=str(error)))
            continue
        records.append(Record(origin, turns))
    return records


class BadRecord(ValueError):
    """A record this reader cannot turn into a conversation; the message says why."""


def _media_path(source: Source, modality: str, name: str) -> Path:
    if not isinstance(name, str) or not name:
        raise BadRecord(f"{modality} file name {name!r} is not a non-empty string")
    folder = source.media.get(modality)
    return Path(name) if folder is None else folder / name


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _text(raw: Mapping, key: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise BadRecord(f"{key!r} is a {type(value).__name__}, not a string")
    return value


# ---------------------------------------------------------------------------------------------- readers
def read_caption_pair(raw: Mapping, source: Source, *, pairs: str, pair_prompt: str) -> list[Turn]:
    found = [m for m in MODALITIES if f"{m}_name" in raw]
    if len(found) != 1:
        raise BadRecord("a caption pair needs exactly one of image_name, audio_name, video_name")
    modality = found[0]
    caption = _text(raw, "caption").strip()
    if not caption:
        raise BadRecord("empty caption")
    path = _media_path(source, modality, raw[f"{modality}_name"])
    prompt = pair_prompt.format(modality=modality, caption=caption)
    if pairs == "comprehension":
        return [Turn("user", prompt, inputs=[MediaRef(modality, path)]), Turn("assistant", caption)]
    if pairs == "generation":
        return [Turn("user", prompt), Turn("assistant", f"<{modality}>", outputs=[OutputRef(modality, caption, path)])]
    raise ValueError(f"pairs must be 'comprehension' or 'generation', got {pairs!r}")


def read_conversation(raw: Mapping, source: Source, **_) -> list[Turn]:
    messages = raw.get("conversations", raw.get("conversation"))
    if not isinstance(messages, list) or not messages:
        raise BadRecord("no 'conversations' list")
    inputs = {m: _as_list(raw.get(f"input_{m}", raw.get(m))) for m in MODALITIES}
    captions = {m: _as_list(raw.get(f"{m}_captions")) for m in MODALITIES}
    targets = {m: _as_list(raw.get(f"output_{m}")) for m in MODALITIES}
    # A T2M turn describes its output on the turn itself; count those captions the record does not list.
    on_turns = {m: 0 for m in MODALITIES}
    for message in messages:
        if isinstance(message, dict) and message.get("output_modality") in MODALITIES and "caption" in message:
            on_turns[message["output_modality"]] += message["caption"] not in captions[message["output_modality"]]
    for m in MODALITIES:
        if targets[m] and len(targets[m]) != len(captions[m]) + on_turns[m]:
            raise BadRecord(f"{len(targets[m])} output_{m} files for {len(captions[m]) + on_turns[m]} {m} captions")
    turns = []
    for message in messages:
        if not (isinstance(message, dict) and message.get("from") in ROLES and isinstance(message.get("value"), str)):
            raise BadRecord("each turn needs 'from' (human or gpt) and a string 'value'")
        role, text = ROLES[message["from"]], message["value"]
        if role == "user":
            turn = Turn("user", PLACEHOLDER.sub("", text).strip())
            for match in PLACEHOLDER.finditer(text):
                m = match.group(1)
                if not inputs[m]:
                    raise BadRecord(f"more <{m}> placeholders than input {m} files")
                turn.inputs.append(MediaRef(m, _media_path(source, m, inputs[m].pop(0))))
        else:
            if "caption" in message and "output_modality" in message:  # T2M: one output, described on the turn
                m = message["output_modality"]
                if m not in MODALITIES:
                    raise BadRecord(f"output_modality {m!r} is not one of {', '.join(MODALITIES)}")
                if not captions[m] or captions[m][0] != message["caption"]:  # else the record lists it too
                    captions[m].insert(0, message["caption"])
                if not PLACEHOLDER.search(text):
                    text = f"{text} <{m}>"
            turn = Turn("assistant", text.strip())
            for match in PLACEHOLDER.finditer(text):
                m = match.group(1)
                if not captions[m]:
                    raise BadRecord(f"more <{m}> placeholders in answers than {m} captions")
                caption = captions[m].pop(0)
                if not isinstance(caption, str) or not caption.strip():
                    raise BadRecord(f"empty {m} caption")
                path = _media_path(source, m, targets[m].pop(0)) if targets[m] else None
                turn.outputs.append(OutputRef(m, caption.strip(), path))
        if turns and turns[-1].role == role:
            raise BadRecord("turns must alternate between human and gpt")
        turns.append(turn)
    if turns[0].role != "user" or turns[-1].role != "assistant":
        raise BadRecord("a conversation must start with human and end with gpt")
    leftover = [m for m in MODALITIES if inputs[m]]
    if leftover:  # files without a placeholder (some LLaVA records): shown with the first question
        turns[0].inputs.extend(MediaRef(m, _media_path(source, m, name)) for m in leftover for name in inputs[m])
    return turns


def read_alpaca(raw: Mapping, source: Source, **_) -> list[Turn]:
    instruction, extra, output = _text(raw, "instruction").strip(), _text(raw, "input").strip(), _text(raw, "output")
    if not instruction:
        raise BadRecord("empty instruction")
    question = f"{instruction}\n{extra}" if extra else instruction
    return [Turn("user", question), Turn("assistant", output.strip())]


def read_videochat(raw: Mapping, source: Source, **_) -> list[Turn]:
    qa = raw.get("QA")
    if not isinstance(qa, list) or not qa:
        raise BadRecord("no 'QA' list")
    video = _media_path(source, "video", raw.get("video"))
    turns = []
    for pair in qa:
        if not isinstance(pair, dict):
            raise BadRecord("each QA entry must be an object with 'q' and 'a'")
        question = "\n".join(part for part in (_text(pair, "i").strip(), _text(pair, "q").strip()) if part)
        turns.append(Turn("user", question, inputs=[MediaRef("video", video)] if not turns else []))
        turns.append(Turn("assistant", _text(pair, "a").strip()))
    return turns


READERS = {
    "caption_pairs": read_caption_pair,
    "cc3m": read_caption_pair,
    "webvid": read_caption_pair,
    "audiocap": read_caption_pair,
    "conversations": read_conversation,
    "llava": read_conversation,
    "t2m": read_conversation,
    "mosit": read_conversation,
    "alpaca": read_alpaca,
    "videochat": read_videochat,
}
