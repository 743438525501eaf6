"""The prompt formats, and the segments a turn is assembled from.

A prompt is a list of segments: text (trained or not) and media (one projected token each, between ``<Img>`` and
``</Img>`` as in the original). A model config's ``prompt_format`` names one of two formats (docs/real_weights.md,
"The prompt format", shows both token by token):

- ``nextgpt``: the original NExT-GPT's training format, which the official 7b_tiva_v0 release was tuned on
  (NExT-GPT-Lagacy/code/model/anyToImageVideoAudio.py ``prompt_wrap`` and model/common/utils.py
  ``build_one_instance_stage_3``): the text pieces the original tokenized one by one, each tokenized as its slow
  LLaMA tokenizer of transformers 4.29 did (``slow_llama_ids``), ``<Img>`` and ``</Img>`` inside the text.
- ``nextmm``: this project's own, which the toyworld model was trained on: "### Human: ", each medium in its own
  marker pair, the text; turns joined by "\n"; text tokenized by the model's own tokenizer.

Keeping the formats here means training and generation agree.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from nextmm.errors import ConfigError
from nextmm.modality import MEDIA_END, MEDIA_START, check_modality

USER_PREFIX = "### Human: "
ASSISTANT_PREFIX = "\n### Assistant: "
# Vicuna v0 ends an answer with "###"; the official checkpoint stops there, tiny models at </s>.
TURN_END = "\n###"
NEXT_USER_PREFIX = "Human: "  # the original's later turns: the "###" before it ends the previous answer

PROMPT_FORMATS = ("nextgpt", "nextmm")
DEFAULT_PROMPT_FORMAT = "nextmm"  # a config without prompt_format: the format every nextmm-trained model used
MEDIA_POSITION = -1  # token id recorded where a projected media token sits in the sequence
IGNORE_INDEX = -100
PREFIX = "\u2581"  # "▁", sentencepiece's space


@dataclass
class Media:
    """One input medium: ``data`` is the preprocessed ImageBind input, e.g. (3, 224, 224) for an image, or with
    ``encoded`` ImageBind's output for it, (embed_dim,) (precomputed features)."""

    modality: str
    data: torch.Tensor
    encoded: bool = False

    def __post_init__(self) -> None:
        check_modality(self.modality)


@dataclass
class Text:
    text: str
    train: bool = False  # whether the NLL loss covers these tokens


Segment = Text | Media


@dataclass
class Message:
    role: str  # "user" or "assistant"
    text: str
    media: list[Media] = field(default_factory=list)


def check_prompt_format(name: str) -> str:
    if name not in PROMPT_FORMATS:
        raise ConfigError(f"prompt_format={name!r}: use {' or '.join(PROMPT_FORMATS)} (docs/real_weights.md)")
    return name


def prompt_segments(messages: list[Message], *, train_answers: bool = False,
                    prompt_format: str = DEFAULT_PROMPT_FORMAT) -> list[Segment]:
    """Segments for a conversation; ``train_answers`` makes every assistant reply a loss target.

    Media of a user message come first, then the text, as in NExT-GPT. A conversation that ends with a user
    message ends with the assistant prefix, ready to generate.
    """
    if check_prompt_format(prompt_format) == "nextgpt":
        return _nextgpt_segments(messages, train_answers)
    segments: list[Segment] = []
    for message in messages:
        if message.role == "user":
            segments.append(Text(USER_PREFIX))
            segments.extend(message.media)
            segments.append(Text(message.text + ASSISTANT_PREFIX))
        elif message.role == "assistant":
            segments.append(Text(message.text + TURN_END, train=train_answers))
            segments.append(Text("\n"))
        else:
            raise ValueError(f"unknown role {message.role!r}: use 'user' or 'assistant'")
    return segments


def _nextgpt_segments(messages: list[Message], train_answers: bool) -> list[Segment]:
    """The original's stage-3 pieces, one Text per tokenizer call it makes, media markers inside the text.

    First turn: prompt_wrap's "### Human: <Img>" (with media) or "### Human: " (without), then
    build_one_instance_stage_3's "</Img> " + question + "\n### Assistant: " (without media: no "</Img> ").
    Later questions: "Human: " + question + "\n### Assistant: ". Answers: answer + "\n###" (signal tokens stand in
    the answer's text). The original trained one medium, in the first turn only; more media, and media in later
    turns, sit the same way, each between <Img> and </Img> (the tokenizer drops the space between two).
    """
    segments: list[Segment] = []
    for message in messages:
        if message.role == "user":
            opening = USER_PREFIX if not segments else NEXT_USER_PREFIX
            question = message.text + ASSISTANT_PREFIX
            if not message.media:
                segments += [Text(opening), Text(question)] if not segments else [Text(opening + question)]
                continue
            segments.append(Text(opening + MEDIA_START))
            for index, medium in enumerate(message.media):
                segments.append(medium)
                last = index == len(message.media) - 1
                segments.append(Text(MEDIA_END + " " + question if last else MEDIA_END + " " + MEDIA_START))
        elif message.role == "assistant":
            segments.append(Text(message.text + TURN_END, train=train_answers))
        else:
            raise ValueError(f"unknown role {message.role!r}: use 'user' or 'assistant'")
    return segments


def encode_segments(tokenizer: PreTrainedTokenizerBase, segments: Sequence[Segment], prompt_format: str,
                    added: Collection[str]) -> tuple[list[int], list[int]]:
    """(ids, labels) of one sample, BOS first: MEDIA_POSITION where a projected medium goes, labels IGNORE_INDEX
    except on text marked ``train``. ``added``: the tokens nextmm adds (media markers, signal tokens).

    nextgpt: text as ``slow_llama_ids``, a medium is its one position (its markers are in the text). nextmm: text
    through the tokenizer as it is, a medium is <Img> [medium] </Img>.
    """
    start, end = tokenizer.convert_tokens_to_ids([MEDIA_START, MEDIA_END])
    ids, labels = [tokenizer.bos_token_id], [IGNORE_INDEX]
    for segment in segments:
        if isinstance(segment, Text):
            if prompt_format == "nextgpt":
                tokens = slow_llama_ids(tokenizer, segment.text, added)
            else:
                tokens = tokenizer(segment.text, add_special_tokens=False).input_ids
            ids += tokens
            labels += tokens if segment.train else [IGNORE_INDEX] * len(tokens)
        else:
            media = [MEDIA_POSITION] if prompt_format == "nextgpt" else [start, MEDIA_POSITION, end]
            ids += media
            labels += [IGNORE_INDEX] * len(media)
    return ids, labels


def slow_llama_ids(tokenizer: PreTrainedTokenizerBase, text: str, added: Collection[str]) -> list[int]:
    """Token ids of ``text`` as the original's tokenizer gives them: transformers 4.29's slow LlamaTokenizer
    (``PreTrainedTokenizer.tokenize``) with tokens added by ``add_tokens``.

    It cuts the text at the added tokens and strips the whitespace on both sides of each ("We strip left and right
    by default": spaces and newlines alike, so "a picture [IMG3]\n###" reads "a picture", [IMG3], "###"), then
    sentencepiece encodes every remaining piece alone, each with its leading "▁" ("###" -> "▁###"). BOS, EOS and
    UNK are cut out too, without stripping (the tokenizer declares them lstrip=rstrip=False).
    """
    kept = {t for t in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) if t}
    cut = sorted({*added, *kept}, key=len, reverse=True)
    parts = re.split("(" + "|".join(map(re.escape, cut)) + ")", text)  # text, token, text, ..., text
    for i in range(1, len(parts), 2):
        if parts[i] in added:
            parts[i - 1], parts[i + 1] = parts[i - 1].rstrip(), parts[i + 1].lstrip()
    ids: list[int] = []
    for i, part in enumerate(parts):
        if i % 2:
            ids.append(tokenizer.convert_tokens_to_ids(part))
        elif part:
            ids += sentencepiece_ids(tokenizer, part)
    return ids


def sentencepiece_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """``text`` as sentencepiece encodes it: with one "▁" in front always (its dummy prefix), so " ." reads "▁", "▁",
    ".". transformers 5's LLaMA tokenizer adds that "▁" only where the text does not start with a space; given the
    "▁" itself, it adds none. A tokenizer that always adds its own is given the text as it is."""
    adds_its_own = tokenizer(PREFIX + "a", add_special_tokens=False).input_ids != tokenizer(
        "a", add_special_tokens=False).input_ids
    return tokenizer(text if adds_its_own else PREFIX + text, add_special_tokens=False).input_ids


def tidy_spaces(text: str) -> str:
    """Single spaces and none before punctuation, as left where media or signal runs were taken out of a text:
    "a picture  and a sound ." -> "a picture and a sound."."""
    text = re.sub(r" +([.,!?:;])", r"\1", text)
    return re.sub(r" {2,}", " ", text).strip()
