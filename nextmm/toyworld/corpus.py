"""The toyworld's text, as the language model will read it: every conversation in the prompt format.

The corpus of a built toyworld folder (``python -m nextmm world``) is every caption and every
instruction conversation of its training annotations (of MosIT the first ``instructions`` per concept), plus
the world's generic wording (each concept's sentences, canonical captions, small talk). The held-out files
under eval/ are left out, so evaluation wording stays unseen.

Media do not exist for a text model, so each input medium is written as a word standing in for it, between
the media markers the stages put around a projected medium: "<Img> surf</Img>", one of its scene's concept
keywords (seeded by the file's name). The model thereby learns what a real LLM brings from its web text:
the answer depends on what sits between the markers. Stage 1 then has somewhere to map ImageBind vectors to;
a model that had only read captions after "Describe this image briefly." answers with any scene's caption
whatever stands there. An answer is cut where its outputs go ("... <audio>.") into the pieces the stages write
around the signal runs (``data.dataset.around_outputs``), so the tokens before and after a run are the ones
stage 3 trains; the signal tokens themselves are new words to the stages.

A document is a conversation rendered with ``nextmm.inference.prompt.prompt_segments``: a list of text
pieces that ``NextMM`` tokenizes one by one, so pretraining sees the same token boundaries as the stages.
Then come conversations of the instruction grammar (``instruction``: requests and questions phrased
every which way, the stand-in for a real LLM's instruction tuning), and last plain-text documents of
general text (``language.narrative``), the toy stand-in for the web text a real LLM read: the world's
media words of both splits in the same slots, so held-out wording is known language, though never a request.

    documents = corpus_documents("data/toyworld")   # [["### Human: ", "surf vlog\\n### Assistant: ", ...], ...]
    text = "".join(documents[0])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from nextmm.data.dataset import around_outputs
from nextmm.data.records import MediaRef, Source, Turn, read_source
from nextmm.errors import ConfigError
from nextmm.inference.prompt import Message, Text, prompt_segments, tidy_spaces
from nextmm.modality import MEDIA_END, MEDIA_START, MODALITIES
from nextmm.toyworld import asking, wordings
from nextmm.toyworld import build as layout
from nextmm.toyworld import language as lang
from nextmm.toyworld.build import text_rng
from nextmm.toyworld.concepts import CONCEPT_NAMES

Document = list[str]  # text pieces, tokenized one by one
CAPTION_PROMPT = "Describe this {modality} briefly."  # as nextmm/conf/stage/encoder_side.yaml's pair_prompt
NARRATIVES = 100  # plain general-text documents per concept
INSTRUCTIONS = 800  # conversations in people's words per concept (nextmm.toyworld.asking)
OUTSIDE = 1200  # conversations about no place: things outside the world, and small talk
# What each asks for, in turn: every set of media (in a drawn order), questions in words, vlogs, music, a second
# medium after a first, an attached medium described or answered with another medium.
INSTRUCTION_KINDS = (("image",), ("audio",), ("video",), ("image", "audio"), ("image", "video"), ("audio", "video"),
                     ("image", "audio", "video"), "question", ("image",), ("audio",), ("video",), "cross", "vlog",
                     "follow_up", "question", "describe", "cross", ("image", "audio", "video"), "music", "question",
                     ("image", "audio", "video"), ("image", "audio"), ("audio", "video"))

_PLACEHOLDER = re.compile(r"<(?:image|audio|video)>\n?")


def strip_media(text: str) -> str:
    """"Here is a picture of the sea <image>." -> "Here is a picture of the sea."."""
    return tidy_spaces(_PLACEHOLDER.sub("", text))


def stand_in(file_name: str | Path) -> str:
    """The word written for a medium: a keyword of its scene's concept, drawn by the file's name
    ("beach_00012.png" -> "surf"), so the same file always reads the same."""
    name = Path(file_name).name
    concept = name.split("_")[0]
    if concept not in CONCEPT_NAMES:
        raise ConfigError(f"{file_name}: a toyworld media file is named <concept>_<index>, one of "
                          f"{', '.join(CONCEPT_NAMES)}")
    return lang.pick(text_rng(0, "stand-in", name), lang.words(concept).keywords)


def render(turns: Sequence[str | Turn]) -> Document:
    """A conversation's text pieces: plain strings alternate user / assistant; a records Turn's input media
    become their stand-in words between the media markers, before the user's text, where the stages put
    projected media. Every assistant reply is closed by the turn end ("\\n###")."""
    document = []
    for index, turn in enumerate(turns):
        if isinstance(turn, str):
            turn = Turn("user" if index % 2 == 0 else "assistant", turn)
        text = turn.text if turn.role == "assistant" else strip_media(turn.text)
        pieces = [piece for segment in prompt_segments([Message(turn.role, text)]) if isinstance(segment, Text)
                  for piece in around_outputs(segment.text)[0] if piece]
        words = [f"{MEDIA_START} {stand_in(medium.path)}{MEDIA_END}" for medium in turn.inputs]
        document += pieces[:1] + words + pieces[1:]
    return document


def corpus_documents(root: str | Path) -> list[Document]:
    """Every training conversation of the toyworld folder ``root``, then the generic wording."""
    root = Path(root)
    if not (root / "manifest.json").is_file():
        raise ConfigError(f"not a toyworld folder (no manifest.json): {root}; build one with "
                          "python -m nextmm world output=<folder>")
    return [render(turns) for turns in _conversations(root)] + generic_documents()


def corpus_text(documents: list[Document]) -> Iterator[str]:
    """Each document as one string (what the tokenizer trains on)."""
    return ("".join(document) for document in documents)


def generic_documents() -> list[Document]:
    """The world's wording that no annotation need contain: concept sentences, canonical captions, chat, then
    conversations in people's words (asking: requests, questions, media in and out, things outside the world),
    then plain general text (language.narrative: the media words of both splits used alike, no requests)."""
    documents = []
    for concept in CONCEPT_NAMES:
        words = lang.words(concept)
        for topic in wordings.QUESTIONS:
            subject = words.subjects.train[0]
            question = wordings.QUESTIONS[topic].train[0].format(x=subject)
            documents.append(render([question, getattr(words, topic)]))
        for modality in MODALITIES:
            documents.append(render([CAPTION_PROMPT.format(modality=modality),
                                     lang.canonical_caption(concept, modality)]))
    for prompt, answer in wordings.CHAT:
        documents.append(render([prompt, lang.chat_answer(answer)]))
    for concept in CONCEPT_NAMES:
        documents += [instruction(concept, i) for i in range(INSTRUCTIONS)]
    documents += [outside(i) for i in range(OUTSIDE)]
    for concept in CONCEPT_NAMES:
        documents += [[lang.narrative(concept, text_rng(0, "narrative", concept, i))] for i in range(NARRATIVES)]
    return documents


def instruction(concept: str, index: int) -> Document:
    """A conversation in people's words about ``concept``: INSTRUCTION_KINDS' kind ``index`` (modulo), answered as
    the model should; an attached medium is its stand-in word between the media markers."""
    rng = text_rng(0, "instruction", concept, index)
    kind = INSTRUCTION_KINDS[index % len(INSTRUCTION_KINDS)]
    if kind == "question":
        exchange = asking.question(concept, rng)
    elif kind == "vlog":
        exchange = asking.vlog(concept, rng)
    elif kind == "music":
        music = concept if concept in asking.book.MUSIC else wordings.MUSIC[lang.words(concept).vlog_music]
        exchange = asking.music_request(music, rng)
    elif kind == "follow_up":
        first = rng.choice(MODALITIES)
        then = str(rng.choice([m for m in MODALITIES if m != first]))
        before = asking.media_request([str(first)], concept, rng)
        after = asking.follow_up(then, concept, rng)
        return render([before.prompt, before.answer, after.prompt, after.answer])
    elif kind in ("describe", "cross"):
        given = str(rng.choice(MODALITIES))
        medium = MediaRef(given, Path(f"{concept}_{index:05d}.{given}"))
        if kind == "describe":
            prompt, reply = asking.describe(given, rng), lang.describe_answer(given, lang.phrase(concept, given, rng), rng)
        else:
            exchange = asking.cross_media(given, str(rng.choice([m for m in MODALITIES if m != given])), concept, rng)
            prompt, reply = exchange.prompt, exchange.answer
        return render([Turn("user", prompt, inputs=[medium]), reply])
    else:
        exchange = asking.media_request([kind[j] for j in rng.permutation(len(kind))], concept, rng)
    return render([exchange.prompt, exchange.answer])


def outside(index: int) -> Document:
    """Something outside the world asked for (the answer says which places the model knows), or small talk."""
    rng = text_rng(0, "outside", index)
    exchange = asking.chat(rng) if index % 4 == 3 else asking.unknown(rng)
    return render([exchange.prompt, exchange.answer])


def _conversations(root: Path) -> Iterator[list[Turn]]:
    """The training annotations read as the stages read them (nextmm.data.records), caption pairs asked as
    stage 1 asks them; media files are only named, never opened."""
    files = [("caption_pairs", f"{layout.PAIRS[m]}/{layout.PAIR_FILES[m]}") for m in MODALITIES]
    files += [("llava", f"{layout.LLAVA}/llava.json"), ("videochat", f"{layout.VIDEOCHAT}/videochat.json"),
              ("alpaca", f"{layout.ALPACA}/alpaca.json")]
    files += [("t2m", f"{layout.T2M}/{m}_instruction_tuning.json") for m in MODALITIES]
    files += [("mosit", f"{layout.MOSIT}/mosit_instruction_tuning.json")]
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    for kind, relative in files:
        if not (root / relative).is_file():
            continue
        source = Source(kind, root / relative, media={m: None for m in MODALITIES})
        for index, record in enumerate(read_source(source, pairs="comprehension", pair_prompt=CAPTION_PROMPT)):
            if record.problem is None and (kind != "mosit" or _read_mosit(manifest, index)):
                yield record.turns


def _read_mosit(manifest: dict, index: int) -> bool:
    """Whether the corpus reads MosIT conversation ``index`` (concept-major in the file): the first ``instructions``
    of each concept, as many as of every other set. A world built with more (``mosit=``) weighs stage 3's mix with
    them, as NExT-GPT's MosIT is stage-3 data Vicuna never read, and the LLM stays the one of the same world
    without them; an LLM that read them all switched media worse after stage 3 (0.87, docs/toyworld.md)."""
    per_concept = manifest.get("mosit")  # worlds built before the setting have as many as the other sets
    return not per_concept or index % per_concept < manifest["instructions"]
