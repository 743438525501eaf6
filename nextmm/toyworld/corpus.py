"""The toyworld's text, as the language model will read it: every conversation in the prompt format.

The corpus of a built toyworld folder (``python -m nextmm.toyworld.build``) is every caption and every
instruction conversation of its training annotations, plus the world's generic wording (each concept's
sentences, canonical captions, small talk). Media do not exist for a text model: input placeholders
("<image>\\n") and output placeholders ("... <audio>.") are dropped. The held-out files under eval/ are
left out, so evaluation wording stays unseen.

A document is a conversation rendered with ``nextmm.conversation.prompt_segments``: a list of text
pieces that ``NextMM`` tokenizes one by one, so pretraining sees the same token boundaries as the stages.

    documents = corpus_documents("data/toyworld")   # [["### Human: ", "surf vlog\\n### Assistant: ", ...], ...]
    text = "".join(documents[0])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from nextmm.conversation import Message, Text, prompt_segments
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES
from nextmm.toyworld import build as layout
from nextmm.toyworld import language as lang
from nextmm.toyworld.concepts import CONCEPT_NAMES

Document = list[str]  # text pieces, tokenized one by one
CAPTION_PROMPT = "Describe this {modality} briefly."  # as conf/stage/encoder_side.yaml's pair_prompt

_PLACEHOLDER = re.compile(r"<(?:image|audio|video)>\n?")


def strip_media(text: str) -> str:
    """"Here is a picture of the sea <image>." -> "Here is a picture of the sea."."""
    text = _PLACEHOLDER.sub("", text)
    text = re.sub(r" +([.,!?:;])", r"\1", text)
    return re.sub(r" {2,}", " ", text).strip()


def render(messages: list[Message]) -> Document:
    """The conversation's text pieces, every assistant reply closed by the turn end ("\\n###")."""
    return [segment.text for segment in prompt_segments(messages) if isinstance(segment, Text)]


def corpus_documents(root: str | Path) -> list[Document]:
    """Every training conversation of the toyworld folder ``root``, then the generic wording."""
    root = Path(root)
    if not (root / "manifest.json").is_file():
        raise ConfigError(f"not a toyworld folder (no manifest.json): {root}; build one with "
                          "python -m nextmm.toyworld.build output=<folder>")
    return [render(messages) for messages in _conversations(root)] + generic_documents()


def corpus_text(documents: list[Document]) -> Iterator[str]:
    """Each document as one string (what the tokenizer trains on)."""
    return ("".join(document) for document in documents)


def generic_documents() -> list[Document]:
    """The world's wording that no annotation need contain: concept sentences, canonical captions, chat."""
    documents = []
    for concept in CONCEPT_NAMES:
        words = lang.words(concept)
        for topic in lang.QUESTIONS:
            subject = words.subjects.train[0]
            question = lang.QUESTIONS[topic].train[0].format(x=subject)
            documents.append(render(_exchange(question, getattr(words, topic))))
        for modality in MODALITIES:
            documents.append(render(_exchange(CAPTION_PROMPT.format(modality=modality),
                                              lang.canonical_caption(concept, modality))))
    for prompt, answer in lang.CHAT:
        documents.append(render(_exchange(prompt, lang.chat_answer(answer))))
    return documents


def _exchange(*texts: str) -> list[Message]:
    """Alternating user / assistant messages, media placeholders dropped."""
    return [Message("user" if i % 2 == 0 else "assistant", strip_media(text)) for i, text in enumerate(texts)]


def _load(root: Path, relative: str) -> list:
    path = root / relative
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def _conversations(root: Path) -> Iterator[list[Message]]:
    for modality in MODALITIES:  # caption pairs, asked as stage 1 asks them
        for record in _load(root, f"{layout.PAIRS[modality]}/{layout.PAIR_FILES[modality]}"):
            yield _exchange(CAPTION_PROMPT.format(modality=modality), record["caption"])
    for record in _load(root, f"{layout.LLAVA}/llava.json"):
        yield _exchange(*(turn["value"] for turn in record["conversations"]))
    for record in _load(root, f"{layout.VIDEOCHAT}/videochat.json"):
        yield _exchange(*(text for qa in record["QA"] for text in (qa["q"], qa["a"])))
    for record in _load(root, f"{layout.ALPACA}/alpaca.json"):
        question = "\n".join(part for part in (record["instruction"], record["input"]) if part)
        yield _exchange(question, record["output"])
    for modality in MODALITIES:
        for record in _load(root, f"{layout.T2M}/{modality}_instruction_tuning.json"):
            yield _exchange(*(turn["value"] for turn in record["conversation"]))
    for record in _load(root, f"{layout.MOSIT}/mosit_instruction_tuning.json"):
        yield _exchange(*(turn["value"] for turn in record["conversations"]))
