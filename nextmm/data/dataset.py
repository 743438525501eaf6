"""Training samples: records become prompt segments with preprocessed media, in DataLoader workers.

A sample is a conversation in NExT-GPT's prompt format (nextmm.inference.prompt) whose assistant answers are
the loss targets. Where an answer produces a medium, its signal tokens stand in the text and an `Output`
carries what they are aligned to (the caption, its precomputed target if any, target media if asked).

ImageBind preprocessing (`load_media`) runs in ``__getitem__``, so it happens in the DataLoader's worker
processes and never in the training forward; with precomputed ``features`` a medium is its ImageBind
vector instead, read from the folder, and the encoder does not run at all. A sample that cannot be used
(missing or corrupt file, empty caption, too many tokens) comes back as `Skipped` with the reason;
`collate` keeps those apart so the training loop can count them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from nextmm.config import resolve_path
from nextmm.data.decoder_media import DecoderMediaSpec, load_decoder_media
from nextmm.data.precomputed import (
    Precomputed,
    decoder_fingerprints,
    encoder_fingerprints,
    media_key,
)
from nextmm.data.records import PLACEHOLDER, Record, Source, read_source
from nextmm.errors import ConfigError, MediaError
from nextmm.inference.prompt import (
    DEFAULT_PROMPT_FORMAT,
    Media,
    Message,
    Segment,
    check_prompt_format,
    encode_segments,
    prompt_segments,
)
from nextmm.modality import MODALITIES, signal_tokens
from nextmm.parts.llm import added_tokens
from nextmm.parts.preprocess import load_media


def around_outputs(text: str) -> tuple[list[str], list[str]]:
    """An answer cut at its output placeholders: the text pieces (one more than the placeholders), spaced as the
    stages write them around signal runs (``with_signals``), and the placeholders' modalities in order.

    Text after a run starts with exactly one space ("<image>, a clip" -> " , a clip"), so the token that follows
    a run is the tokenizer's lone space whatever comes next ("and" a further medium, a comma, the end): what
    comes after a medium is chosen at that text token, not at the run's last signal token, whose last-layer
    state the output projector reads. There, the toyworld model gave the answers' "and" a probability of
    0.05-0.17, and its multi-media answers stopped after their first medium (docs/training.md). Runs with only
    spaces between them stay side by side.

        around_outputs("Here is the sea <image> and its sound <audio>.")
        (["Here is the sea ", " and its sound ", " ."], ["image", "audio"])
    """
    parts = PLACEHOLDER.split(text)  # text, modality, text, modality, ..., text
    pieces = [parts[0]] + [" " + rest.lstrip(" ") if rest.strip(" ") else "" for rest in parts[2::2]]
    return pieces, parts[1::2]


@dataclass
class Output:
    """A medium an answer produces: its signal tokens' projection is aligned to ``caption``'s conditioning."""

    modality: str
    caption: str
    target: torch.Tensor | None = None  # precomputed text-encoder conditioning (*conditioning_shape)
    media: torch.Tensor | None = None  # target media for the denoising loss, see nextmm.data.decoder_media


@dataclass
class Example:
    segments: list[Segment]
    outputs: list[Output]  # in the order their signal tokens appear
    num_tokens: int


@dataclass
class Skipped:
    origin: str
    reason: str


@dataclass
class Batch:
    """A collated batch; samples may mix modalities freely."""

    segments: list[list[Segment]]
    outputs: list[list[Output]]
    num_tokens: int  # LLM tokens in the batch, padding excluded
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.segments)


def collate(items: Sequence[Example | Skipped]) -> Batch:
    examples = [item for item in items if isinstance(item, Example)]
    return Batch(
        segments=[e.segments for e in examples],
        outputs=[e.outputs for e in examples],
        num_tokens=sum(e.num_tokens for e in examples),
        skipped=[item for item in items if isinstance(item, Skipped)],
    )


class BadSample(ValueError):
    """A sample to skip; the message is the reason."""


class ConversationDataset(Dataset):
    """Records -> `Example` (or `Skipped`). Media load here, so in the DataLoader workers."""

    def __init__(
        self,
        records: Sequence[Record],
        *,
        tokenizer: PreTrainedTokenizerBase,
        signal_counts: Mapping[str, int],
        max_length: int,
        targets: Precomputed | None = None,
        features: Precomputed | None = None,
        media_root: Path | None = None,
        decoder_media: Mapping[str, DecoderMediaSpec] | None = None,
        prompt_format: str = DEFAULT_PROMPT_FORMAT,
    ):
        self.records = list(records)
        self.tokenizer = tokenizer
        self.prompt_format = check_prompt_format(prompt_format)  # the model's: nextmm.inference.prompt
        self.added = added_tokens(signal_counts)
        self.signals = {m: "".join(signal_tokens(m, signal_counts[m])) for m in MODALITIES}
        self.max_length = max_length
        self.targets = targets
        self.features, self.media_root = features, media_root or Path(".")  # features are keyed relative to it
        self.decoder_media = dict(decoder_media or {})  # modality -> spec: load target media for these

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Example | Skipped:
        record = self.records[index]
        try:
            return self.example(record)
        except (BadSample, MediaError) as error:
            return Skipped(record.origin, str(error))

    def example(self, record: Record) -> Example:
        # 1. the record itself: readable, non-empty answers
        if record.problem:
            raise BadSample(record.problem)
        for turn in record.turns:
            if turn.role == "assistant" and not PLACEHOLDER.sub("", turn.text).strip() and not turn.outputs:
                raise BadSample("empty answer")

        # 2. length, from the text alone, before any file is opened
        texts = [self.with_signals(t.text) for t in record.turns]
        messages = [Message(t.role, text, [Media(r.modality, torch.empty(0)) for r in t.inputs])
                    for t, text in zip(record.turns, texts)]
        segments = prompt_segments(messages, train_answers=True, prompt_format=self.prompt_format)
        num_tokens = len(encode_segments(self.tokenizer, segments, self.prompt_format, self.added)[0])
        if num_tokens > self.max_length:
            raise BadSample(f"too long: {num_tokens} tokens > data.max_length={self.max_length}")

        # 3. media: ImageBind inputs, then what the outputs align to
        for message, turn in zip(messages, record.turns):
            message.media = [self._input_medium(r.modality, r.path) for r in turn.inputs]
        outputs = []
        for ref in (ref for turn in record.turns for ref in turn.outputs):
            output = Output(ref.modality, ref.caption)
            if self.targets is not None:
                output.target = self.targets.get(ref.modality, ref.caption)
            if ref.modality in self.decoder_media and ref.path is not None:
                output.media = load_decoder_media(self.decoder_media[ref.modality], ref.path)
            outputs.append(output)
        return Example(prompt_segments(messages, train_answers=True, prompt_format=self.prompt_format), outputs,
                       num_tokens)

    def _input_medium(self, modality: str, path: Path) -> Media:
        """ImageBind's input for the medium, or its precomputed ImageBind vector."""
        if self.features is None:
            return Media(modality, load_media(modality, path))
        key = media_key(path, self.media_root)
        problem = self.features.problem(modality, key)
        if problem is not None:
            raise BadSample(problem)
        return Media(modality, self.features.get(modality, key), encoded=True)

    def with_signals(self, text: str) -> str:
        """The text with each output placeholder replaced by its signal run, spaced as ``around_outputs`` says."""
        pieces, outputs = around_outputs(text)
        return pieces[0] + "".join(self.signals[m] + piece for m, piece in zip(outputs, pieces[1:]))

    def output_captions(self) -> set[tuple[str, str]]:
        """Every (modality, caption) an answer produces: what precomputed targets must cover."""
        return {(ref.modality, ref.caption) for r in self.records for t in r.turns for ref in t.outputs}

    def input_media(self) -> set[tuple[str, str]]:
        """Every (modality, media key) a question gives: what precomputed features must cover."""
        return {(ref.modality, media_key(ref.path, self.media_root))
                for r in self.records for t in r.turns for ref in t.inputs}


def check_sources(data_cfg: Mapping) -> None:
    """Every source's annotation file is there: checked before a model is built (reading them comes later)."""
    root = resolve_path(data_cfg.get("root") or ".")
    for spec in data_cfg.get("sources") or ():
        path = root / spec["annotations"]
        if not path.is_file():
            raise ConfigError(f"annotation file not found: {path} (check data.root and the data config's sources)")


def read_sources(data_cfg: Mapping, *, pairs: str, pair_prompt: str) -> list[Record]:
    """All records of a data config's ``sources``; paths are relative to ``data.root``, media names to their
    source's ``media`` folder (one, or one per modality; ``data.root`` where none is given). A source's
    ``repeat: N`` lists its records N times, weighting it in the mix."""
    try:
        pair_prompt.format(modality="image", caption="")
    except (KeyError, IndexError, ValueError) as error:
        message = f"pair_prompt {pair_prompt!r} may only use {{modality}} and {{caption}} ({error!r})"
        raise ConfigError(message) from None
    root = resolve_path(data_cfg.get("root") or ".")
    records = []
    for spec in data_cfg["sources"]:
        media = spec.get("media")
        folders = media if isinstance(media, Mapping) else dict.fromkeys(MODALITIES, media)
        source = Source(
            format=spec["format"],
            annotations=root / spec["annotations"],
            media={m: root / folders[m] if folders.get(m) else root for m in MODALITIES},
        )
        repeat = spec.get("repeat", 1)  # a source's weight in the mix: its records, this many times
        if not (isinstance(repeat, int) and not isinstance(repeat, bool) and repeat >= 1):
            raise ConfigError(f"source {spec['annotations']}: repeat={repeat!r}; give a whole number >= 1")
        records.extend(read_source(source, pairs=pairs, pair_prompt=pair_prompt) * repeat)
    if not records:
        raise ConfigError("the data config lists no records (data.sources is empty or its files are)")
    return records


def build_dataset(
    data_cfg: Mapping,
    *,
    tokenizer: PreTrainedTokenizerBase,
    signal_counts: Mapping[str, int],
    pairs: str,
    pair_prompt: str,
    targets: str | Path | None = None,
    decoders_cfg: Mapping | None = None,
    features: str | Path | None = None,
    encoder_cfg: Mapping | None = None,
    decoder_media: Mapping[str, DecoderMediaSpec] | None = None,
    prompt_format: str = DEFAULT_PROMPT_FORMAT,
) -> ConversationDataset:
    """The dataset of a data config (nextmm/conf/data/<name>.yaml, plus the stage's ``data.max_length``).

    ``targets`` / ``features``: folders from nextmm.data.precompute (kind=targets, computed with ``decoders_cfg``;
    kind=features, with ``encoder_cfg``); each must cover every output caption / input medium (checked here, once).
    """
    records = read_sources(data_cfg, pairs=pairs, pair_prompt=pair_prompt)
    target_store = feature_store = None
    if targets is not None:
        target_store = Precomputed(resolve_path(targets), "targets", decoder_fingerprints(decoders_cfg or {}))
    if features is not None:
        if encoder_cfg is None:
            raise ValueError("features need the encoder config they must have been computed with")
        feature_store = Precomputed(resolve_path(features), "features", encoder_fingerprints(encoder_cfg, MODALITIES))
    dataset = ConversationDataset(
        records,
        tokenizer=tokenizer,
        signal_counts=signal_counts,
        max_length=int(data_cfg["max_length"]),
        targets=target_store,
        features=feature_store,
        media_root=resolve_path(data_cfg.get("root") or "."),
        decoder_media=decoder_media,
        prompt_format=prompt_format,
    )
    if target_store is not None:
        _check_covered(target_store, dataset.output_captions(), "output captions", "target", targets)
    if feature_store is not None:
        _check_covered(feature_store, dataset.input_media(), "input media", "feature", features)
    return dataset


def _check_covered(store: Precomputed, wanted: set[tuple[str, str]], what: str, row: str, folder) -> None:
    missing = store.missing(sorted(wanted))
    if missing:
        modality, key = missing[0]
        raise ConfigError(
            f"{len(missing)} {what} have no precomputed {row} in {folder} (first: {modality} {key[:60]!r}); rerun "
            f"python -m nextmm precompute kind={store.kind} with this data"
        )
