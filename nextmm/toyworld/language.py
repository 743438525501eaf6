"""The toyworld's words: captions, requests, questions and answers, in varied wording.

Every wording list comes in two splits. "train" wordings go into the training annotations; "heldout"
wordings (other templates, other phrases) are kept for evaluation only, so modality switching and
captioning are measured on wording the model never saw. Each concept has its own keywords; every caption
or request about a concept names at least one of them and no other concept's (`concepts_in` reads them
back), which makes "did the answer name the right concept?" a plain check.

    captions(concept, modality, rng, split)    "a surfer riding a wave at the beach" / "the sound of the sea"
    request(modalities, subject, rng, split)   "show me a picture of the beach and let me hear it"
    subject(concept, rng, split)               "the beach", "a snowy field"

Requests and questions in people's own words are ``nextmm.toyworld.asking``'s; it keeps clear of this module's
held-out wording (``is_heldout_wording``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np

from nextmm.toyworld.concepts import CONCEPT_NAMES, get_concept
from nextmm.toyworld.wordings import (
    CAPTION_TEMPLATES,
    CREATING,
    DESCRIBE,
    DESCRIBE_ANSWERS,
    GLOSSARY,
    HANDING,
    MAKING,
    MEDIA_WORDS,
    MODALS,
    MULTI_REQUESTS,
    NARRATIVE,
    NARRATIVE_PAIRS,
    PEOPLE,
    QUESTIONS,
    REQUESTS,
    VLOG_ANSWERS,
    VLOG_MUSIC_REQUESTS,
    VLOG_REQUESTS,
    WORDS,
    Split,
    Words,
)


def words(concept: str) -> Words:
    get_concept(concept)
    return WORDS[concept]


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(0, len(options)))]


def phrase(concept: str, modality: str, rng: np.random.Generator, split: str = "train") -> str:
    """What a ``modality`` sample of ``concept`` shows or sounds like: "a surfer riding a wave at the beach"."""
    return pick(rng, getattr(words(concept), modality).get(split))


def captions(concept: str, modality: str, rng: np.random.Generator, split: str = "train") -> str:
    """One caption of a ``modality`` sample of ``concept``: a phrase in one of the split's caption templates."""
    template = pick(rng, CAPTION_TEMPLATES[modality].get(split))
    return template.format(x=phrase(concept, modality, rng, split))


def caption_corpus() -> list[str]:
    """Every caption the world can write: each template of both splits around each phrase of both splits, for
    every concept and modality (the text a toyworld decoder's tokenizer is fitted to)."""
    return [template.format(x=x) for modality, templates in CAPTION_TEMPLATES.items()
            for template in (*templates.train, *templates.heldout) for concept in CONCEPT_NAMES
            for x in (*getattr(words(concept), modality).train, *getattr(words(concept), modality).heldout)]


def canonical_caption(concept: str, modality: str) -> str:
    """The first train caption: one fixed text per concept and modality (e.g. for zero-shot retrieval)."""
    return CAPTION_TEMPLATES[modality].train[0].format(x=getattr(words(concept), modality).train[0])


def subject(concept: str, rng: np.random.Generator, split: str = "train") -> str:
    return pick(rng, words(concept).subjects.get(split))


def request(modalities: Sequence[str], subject_text: str, rng: np.random.Generator, split: str = "train") -> str:
    """A request for ``modalities`` (one, or a combination in MULTI_REQUESTS' order) of ``subject_text``."""
    table = REQUESTS[modalities[0]] if len(modalities) == 1 else MULTI_REQUESTS[tuple(modalities)]
    return pick(rng, table.get(split)).format(x=subject_text)


def _listed(parts: Sequence[str]) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def question(topic: str, subject_text: str, rng: np.random.Generator, split: str = "train") -> str:
    return pick(rng, QUESTIONS[topic].get(split)).format(x=subject_text)


def describe_question(modality: str, rng: np.random.Generator, split: str = "train") -> str:
    return pick(rng, DESCRIBE[modality].get(split))


def describe_answer(modality: str, phrase_text: str, rng: np.random.Generator) -> str:
    """"It shows {phrase}." and the like, for an X -> text answer."""
    return _upper_first(pick(rng, DESCRIBE_ANSWERS[modality]).format(c=phrase_text))


def vlog_request(name: str, rng: np.random.Generator, split: str = "train", music: bool = False) -> str:
    return pick(rng, (VLOG_MUSIC_REQUESTS if music else VLOG_REQUESTS).get(split)).format(v=name)


def vlog_answer(name: str, rng: np.random.Generator) -> str:
    return pick(rng, VLOG_ANSWERS).format(v=name)


def chat_answer(answer: str) -> str:
    """A CHAT answer with the concept list filled in."""
    return answer.format(places=_listed(CONCEPT_NAMES))


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


_KEYWORDS = {word: c for c, w in WORDS.items() for word in w.keywords}


def concepts_in(text: str) -> set[str]:
    """The concepts whose keywords ``text`` names (whole words, any case)."""
    return {_KEYWORDS[word] for word in re.findall(r"[a-z]+", text.lower()) if word in _KEYWORDS}


def concept_of(text: str) -> str | None:
    """The one concept ``text`` names, or None when it names none or several."""
    found = concepts_in(text)
    return found.pop() if len(found) == 1 else None


def narrative(concept: str, rng: np.random.Generator) -> str:
    """A few plain sentences of general text about ``concept``: media words of both splits in the same slots,
    around one of the concept's descriptions or glossary sentences. For the language model's pretraining only;
    a drawn sentence that would contain held-out wording is drawn again."""
    words_ = words(concept)
    x = pick(rng, words_.subjects.train)
    media = [str(m) for m in rng.choice(list(MEDIA_WORDS), size=2, replace=False)]
    sentences = [_free_sentence(rng, NARRATIVE, x, medium) for medium in media]
    if rng.random() < 0.5:
        sentences.append(_free_sentence(rng, NARRATIVE_PAIRS, x, *media))
    about = (words_.looks, words_.sounds, words_.moves, *GLOSSARY[concept])
    sentences.insert(int(rng.integers(0, len(sentences) + 1)), pick(rng, about))
    return " ".join(sentences)


def media_sentence(concept: str, medium: str, rng: np.random.Generator) -> str:
    """One sentence of general text about ``concept`` and ``medium``'s words: "Anna likes to film the alps.",
    "A snapshot of the beach hangs on the wall."; never held-out wording (the encoder's general text)."""
    return _free_sentence(rng, NARRATIVE, pick(rng, words(concept).subjects.train), medium)


def _free_sentence(rng: np.random.Generator, templates: Sequence[str], x: str, medium: str, other: str = "text") -> str:
    """One of ``templates`` filled for ``medium`` (and ``other``), drawn until it holds no held-out fragment."""
    (verbs, nouns, places), (verbs2, nouns2, _) = MEDIA_WORDS[medium], MEDIA_WORDS[other]
    for _ in range(1000):
        sentence = _upper_first(pick(rng, templates).format(
            p=pick(rng, PEOPLE), verb=pick(rng, verbs), noun=pick(rng, nouns), where=pick(rng, places),
            making=pick(rng, MAKING), x=x, verb2=pick(rng, verbs2), noun2=pick(rng, nouns2),
            modal=pick(rng, MODALS), handing=pick(rng, HANDING), creating=pick(rng, CREATING)))
        lowered = sentence.lower()
        if not any(fragment in lowered for fragment in _lowered_fragments()):
            return sentence
    raise ValueError(f"general-text templates for {medium} and {x!r} keep writing held-out wording; change them")


def is_heldout_wording(text: str, x: str) -> bool:
    """Whether ``text`` (about the subject ``x``) holds a fixed part of a held-out template, or is one whole."""
    lowered = text.lower()
    if any(fragment in lowered for fragment in _lowered_fragments()):
        return True
    return any(lowered.replace(x.lower(), slot) in _heldout_templates() for slot in ("{x}", "{v}"))


@functools.cache
def _heldout_templates() -> frozenset[str]:
    return frozenset(template.lower() for table in _wording_tables() for template in table.heldout)


@functools.cache
def _lowered_fragments() -> tuple[str, ...]:
    return tuple(fragment.lower() for fragment in heldout_fragments())


def heldout_fragments() -> list[str]:
    """What evaluation keeps out of all training text: the fixed parts of every held-out template (two words or
    more, 8 characters or more: wording, where a lone word like "illustrate" is vocabulary), and every held-out
    subject and phrase."""
    fragments = [part.strip() for table in _wording_tables() for template in table.heldout
                 for part in re.split(r"\{[a-z]\}", template)
                 if len(part.strip()) >= 8 and len(re.findall(r"[A-Za-z']+", part)) >= 2]
    for concept in CONCEPT_NAMES:
        w = words(concept)
        fragments += [text for entry in (w.subjects, w.image, w.video, w.audio) for text in entry.heldout]
    return fragments


def _wording_tables() -> list[Split]:
    return [*CAPTION_TEMPLATES.values(), *REQUESTS.values(), *MULTI_REQUESTS.values(), *QUESTIONS.values(),
            *DESCRIBE.values(), VLOG_REQUESTS, VLOG_MUSIC_REQUESTS]
