"""The prompt format NExT-GPT was tuned with, and the segments a turn is assembled from.

A prompt is a list of segments: text (trained or not) and media (one projected token each, wrapped in
``<Img> ... </Img>`` as in the original). Keeping the format here means training and generation agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from nextmm.modality import check_modality

USER_PREFIX = "### Human: "
ASSISTANT_PREFIX = "\n### Assistant: "
# Vicuna v0 ends an answer with "###"; the official checkpoint stops there, tiny models at </s>.
TURN_END = "\n###"


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


def prompt_segments(messages: list[Message], *, train_answers: bool = False) -> list[Segment]:
    """Segments for a conversation; ``train_answers`` makes every assistant reply a loss target.

    Media of a user message come first, each in its own marker pair, then the text, as in NExT-GPT.
    A conversation that ends with a user message ends with the assistant prefix, ready to generate.
    """
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


def tidy_spaces(text: str) -> str:
    """Single spaces and none before punctuation, as left where media or signal runs were taken out of a text:
    "a picture  and a sound ." -> "a picture and a sound."."""
    text = re.sub(r" +([.,!?:;])", r"\1", text)
    return re.sub(r" {2,}", " ", text).strip()
