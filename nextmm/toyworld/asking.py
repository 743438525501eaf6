"""Requests and questions in people's words, and the toy model's answers to them.

The grammar composes a message from the tables of ``nextmm.toyworld.phrasebook``: a medium by a noun, a verb,
the sense it is for or a short form; a place by one of the names people give it; a frame around both; then the
way people type (``typed``: lower case, no final punctuation, a typo, a greeting or a thanks). Answers name
each medium and the place in one fixed way ("Here is a picture of the beach <image>."), so what the signal
tokens follow is the same however the request put it, and an answer claims a medium ("Here is ...") exactly
when it carries that medium's placeholder.

    rng = np.random.default_rng(0)
    media_request(("image", "audio"), "beach", rng)
        Exchange(prompt="could you sketch the seaside and let me hear it", media=("image", "audio"),
                 answer="Here is a picture of the beach <image> and the sound of the beach <audio>.")
    question("rain", rng).answer          # the place's sentence in words, no media
    cross_media("image", "audio", "beach", rng).prompt   "make a sound that goes with this photo"
    unknown(rng).answer                   "I can't make that: I only know the beach, ..."

No message is held-out wording of the world's own evaluation (``language.is_heldout_wording``): one that would
be is drawn again, so ``python -m nextmm eval``'s held-out templates stay unseen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from nextmm.modality import MODALITIES
from nextmm.toyworld import language as lang
from nextmm.toyworld import phrasebook as book
from nextmm.toyworld.concepts import CONCEPT_NAMES

ARTICLES = ("the ", "a ", "an ", "some ")


@dataclass(frozen=True)
class Exchange:
    """A user's message and the answer, whose placeholders (<image>, ...) stand where the ``media`` go."""

    prompt: str
    answer: str
    media: tuple[str, ...] = ()


pick = lang.pick


# ------------------------------------------------------------------------------------------- places
def place(concept: str, rng: np.random.Generator) -> str:
    """A name people give ``concept``'s place, now and then with a word before it: "a lovely woodland"."""
    name = pick(rng, book.PLACES[concept])
    if rng.random() < 0.12 and name.startswith(("the ", "a ")) and not name.startswith("a day"):
        article, rest = name.split(" ", 1)
        modifier = pick(rng, book.MODIFIERS)
        name = f"{'a' if article == 'a' and modifier[0] not in 'aeiou' else 'an' if article == 'a' else 'the'} " \
               f"{modifier} {rest}"
    return name


def bare(name: str) -> str:
    """"the beach" -> "beach": a place as a short form's first word."""
    for article in ARTICLES:
        if name.startswith(article):
            return name[len(article):]
    return name


def places_known() -> str:
    return lang._listed([book.CANONICAL[c] for c in CONCEPT_NAMES])


# ---------------------------------------------------------------------------------------- requests
def media_request(media: Sequence[str], concept: str, rng: np.random.Generator) -> Exchange:
    """A request for ``media`` (in the order asked) of ``concept``'s place, and the answer with them in order."""
    x = place(concept, rng)
    prompt = _unseen(lambda: typed(_detailed(_asked(list(media), x, concept, rng), concept, rng), rng), x)
    return Exchange(prompt, answer(media, concept, rng), tuple(media))


def music_request(concept: str, rng: np.random.Generator) -> Exchange:
    """A request for music: calm music is the sunset's sound, lively music the concert's."""
    music = pick(rng, book.MUSIC[concept])

    def draw() -> str:
        way = rng.random()
        if way < 0.45:
            verb = pick(rng, ("play", "play me", "compose", "make", "put on", "create", "generate", "record"))
            return _fill(rng, pick(rng, book.VERB_FRAMES), vp=f"{verb} {music}")
        if way < 0.8:
            return _fill(rng, pick(rng, book.NOUN_FRAMES), np=music)
        return _fill(rng, pick(rng, book.SENSE_FRAMES), sense="hear", x=music)

    prompt = _unseen(lambda: typed(draw(), rng), music)
    return Exchange(prompt, f"{pick(rng, book.OPENINGS)} {book.MUSIC[concept][0]} <audio>.", ("audio",))


def vlog(concept: str, rng: np.random.Generator) -> Exchange:
    """A vlog of the place: an image, its sound and a video."""
    names = book.VLOG_NAMES[concept]
    if rng.random() < 0.6:
        name = pick(rng, names)
        prompt = _unseen(lambda: typed(pick(rng, book.VLOG_FRAMES).format(v=name), rng), name)
    else:
        x = place(concept, rng)
        prompt = _unseen(lambda: typed(pick(rng, book.VLOG_ABOUT).format(x=x), rng), x)
    return Exchange(prompt, book.VLOG_ANSWER.format(v=names[0]), tuple(MODALITIES))


def question(concept: str, rng: np.random.Generator, topic: str | None = None) -> Exchange:
    """A question about how the place looks, sounds or moves, answered in words only; now and then a yes/no
    question about its look ("are there cars in the city?") or one that says to answer in words."""
    topic = topic or pick(rng, list(book.QUESTION_FRAMES))
    x = place(concept, rng)

    def draw() -> str:
        if topic == "looks" and rng.random() < 0.4:
            text = pick(rng, book.CHECK_FRAMES).format(x=x, d=pick(rng, book.DETAILS[concept]))
        else:
            text = pick(rng, book.QUESTION_FRAMES[topic]).format(x=x)
        if rng.random() < 0.2:
            text = text.removesuffix("?") + pick(rng, book.WORDS_ONLY) + ("?" if text.endswith("?") else "")
        return typed(text, rng)

    return Exchange(_unseen(draw, x), getattr(lang.words(concept), topic))


def unknown(rng: np.random.Generator) -> Exchange:
    """A request (or a question) about something outside the world: the answer says what the model knows."""
    thing = pick(rng, book.OUTSIDE)
    if rng.random() < 0.3:
        thing = f"{thing} {pick(rng, book.OUTSIDE_DOING)}"
    if rng.random() < 0.15:
        draw = lambda: typed(pick(rng, book.QUESTION_FRAMES[pick(rng, list(book.QUESTION_FRAMES))]).format(x=thing), rng)  # noqa: E731
    else:
        count = 1 if rng.random() < 0.8 else 2
        media = [str(m) for m in rng.choice(MODALITIES, size=count, replace=False)]
        draw = lambda: typed(_asked(media, thing, None, rng), rng)  # noqa: E731
    return Exchange(_unseen(draw, thing), book.UNKNOWN_ANSWER.format(places=places_known()))


def chat(rng: np.random.Generator) -> Exchange:
    """Small talk about no place, answered in words."""
    prompts, reply = book.CHAT[int(rng.integers(len(book.CHAT)))]
    return Exchange(typed(pick(rng, prompts), rng), reply.format(places=places_known()))


def describe(modality: str, rng: np.random.Generator) -> str:
    """A question about an attached medium ("what am I hearing?"); the answer names its place (language)."""
    ref = pick(rng, book.REFERENCES[modality])
    if rng.random() < 0.35:  # introduced first: "listen to this, what is it?"
        questions = book.IT_QUESTIONS + book.IT_BY_SENSE[modality]
        return _unseen(lambda: typed(_led(modality, pick(rng, questions), rng), rng), "it")
    frames = book.DESCRIBE_FRAMES + book.DESCRIBE_BY_SENSE[modality]
    return _unseen(lambda: typed(pick(rng, frames).format(ref=ref), rng), ref)


def cross_media(given: str, wanted: str, concept: str, rng: np.random.Generator) -> Exchange:
    """A request for another medium of an attached one's place: "make a sound that goes with this photo"."""
    ref, way = pick(rng, book.REFERENCES[given]), rng.random()
    if way < 0.35:  # introduced first, then a request for the place: "I took this photo. play the sound of it"
        def draw() -> str:
            return _led(given, _asked_once(wanted, pick(rng, book.SCENE_ANAPHORS), rng, short=False), rng)
    elif way < 0.55:  # by the wanted medium's noun: "this sound as a picture"
        def draw() -> str:
            return pick(rng, book.AS_FRAMES).format(ref=ref, noun=pick(rng, book.NOUNS[wanted]))
    else:
        def draw() -> str:
            return pick(rng, book.CROSS_FRAMES[wanted]).format(ref=ref)
    prompt = _unseen(lambda: typed(draw(), rng), ref)
    return Exchange(prompt, answer([wanted], concept, rng), (wanted,))


def _led(given: str, rest: str, rng: np.random.Generator) -> str:
    """``rest`` after a sentence that hands the attached medium over: "listen to this, what is it?"."""
    return f"{pick(rng, book.ATTACH_LEADS[given])}{pick(rng, book.LEAD_JOINS)}{rest}"


def follow_up(wanted: str, concept: str, rng: np.random.Generator) -> Exchange:
    """A later message asking for another medium of what the last answer showed: "now make it a video"."""
    prompt = _unseen(lambda: typed(pick(rng, book.FOLLOW_UPS[wanted]), rng), "it")
    return Exchange(prompt, answer([wanted], concept, rng), (wanted,))


def answer(media: Sequence[str], concept: str, rng: np.random.Generator) -> str:
    """"Here is a picture of the beach <image> and the sound of the beach <audio>." for ``media`` in order."""
    parts = [book.ANSWER_PARTS[m].format(c=book.CANONICAL[concept]) for m in media]
    return f"{pick(rng, book.OPENINGS)} {lang._listed(parts)}."


# ----------------------------------------------------------------------------------------- grammar
def _asked(media: list[str], x: str, concept: str | None, rng: np.random.Generator) -> str:
    """A request for ``media`` of ``x``, before typing: one medium by one of five forms, several by a list of
    nouns, a request and more ("... and let me hear it"), senses together or short forms."""
    if len(media) == 1:
        return _asked_once(media[0], x, rng)
    way = rng.random()
    if way < 0.3:
        nouns = lang._listed([pick(rng, book.NOUNS[m]) for m in media])
        return _fill(rng, pick(rng, book.NOUN_FRAMES), np=f"{nouns} of {x}")
    if way < 0.4 and tuple(media) in book.SENSES_TOGETHER:
        return _fill(rng, pick(rng, book.SENSE_FRAMES), sense=pick(rng, book.SENSES_TOGETHER[tuple(media)]), x=x)
    if way < 0.55 or (len(media) == 3 and way < 0.7):
        return _listed_media(media, x, rng)
    first = _asked_once(media[0], x, rng)
    question_mark = first.endswith("?")
    later = [_again(m, concept, rng) for m in media[1:]]
    text = first.removesuffix("?") + "".join(", " + part for part in later[:-1])
    return text + pick(rng, book.JOINS) + later[-1] + ("?" if question_mark else "")


def _again(medium: str, concept: str | None, rng: np.random.Generator) -> str:
    """A further medium of the same place: "let me hear it", or naming what is there: "let me hear the waves"."""
    way = rng.random()
    if concept is None or way < 0.45:
        return pick(rng, book.AGAIN[medium])
    if way < 0.6:  # "record its sound too"
        return pick(rng, book.AGAIN_ITS).format(verb=pick(rng, book.ITS_VERBS[medium]), short=pick(rng, book.SHORT[medium]))
    named = book.SOUNDS[concept] if medium == "audio" else book.PLACES[concept]
    return pick(rng, book.AGAIN_NAMED[medium]).format(y=pick(rng, named))


def _listed_media(media: list[str], x: str, rng: np.random.Generator) -> str:
    """Several media as a list of short forms: "rainy day: photo, audio, video", "pic + sound of the dunes"."""
    shorts = [pick(rng, book.SHORT[m]) for m in media]
    separator = pick(rng, book.LIST_SEPARATORS)
    listed = separator.join(shorts) if separator != ", and " else ", ".join(shorts[:-1]) + separator + shorts[-1]
    frames = [f for f in book.LIST_FRAMES if len(media) == 3 or "{all}" not in f]
    return pick(rng, frames).format(x=bare(x) if rng.random() < 0.5 else x, list=listed,
                                    all=pick(rng, book.ALL_MEDIA))


def _detailed(request: str, concept: str, rng: np.random.Generator, share: float = 0.2) -> str:
    """Now and then a request with what the place should have: "draw the desert, with cacti and dunes"."""
    if rng.random() >= share:
        return request
    detail = pick(rng, book.DETAILS[concept])
    question_mark = request.endswith("?")
    text = pick(rng, book.DETAIL_FRAMES).format(r=request.removesuffix("?"), d=detail, D=detail[:1].upper() + detail[1:])
    return text + ("?" if question_mark else "")


def _asked_once(medium: str, x: str, rng: np.random.Generator, short: bool = True) -> str:
    """One medium, by a verb ("sketch {x}"), a noun ("a still of {x}"), a sense ("let me hear {x}"), a clause
    ("show me what {x} looks like") or, where ``short``, a short form ("{x} pic")."""
    way = rng.random() * (1.0 if short else 0.87)
    if way < 0.3:
        return _fill(rng, pick(rng, book.VERB_FRAMES), vp=f"{pick(rng, book.VERBS[medium])} {x}")
    if way < 0.65:
        return _fill(rng, pick(rng, book.NOUN_FRAMES), np=f"{pick(rng, book.NOUNS[medium])} of {x}")
    if way < 0.77:
        return _fill(rng, pick(rng, book.SENSE_FRAMES), sense=pick(rng, book.SENSES[medium]), x=x)
    if way < 0.87:
        return pick(rng, book.WHAT[medium]).format(x=x)
    return pick(rng, book.SHORT_FRAMES).format(x=bare(x), short=pick(rng, book.SHORT[medium]))


def _fill(rng: np.random.Generator, frame: str, **slots: str) -> str:
    """``frame`` with its word slots drawn ({generic}, {handing}, {wanting}) and ``slots`` put in."""
    words = {"generic": pick(rng, book.GENERIC), "handing": pick(rng, book.HANDING),
             "wanting": pick(rng, book.WANTING)}
    keys = ("vp", "np", "sense", "x")
    return frame.format(**words, **{k: slots.get(k, "{" + k + "}") for k in keys})


def typed(text: str, rng: np.random.Generator) -> str:
    """``text`` as people type it: now and then a greeting before or a word after, all lower case, no final
    punctuation, or a typo in one word."""
    if rng.random() < 0.12:
        text = pick(rng, book.OPENERS) + text
    if rng.random() < 0.12:
        end = "?" if text.endswith("?") else ""
        text = text.removesuffix("?") + pick(rng, book.CLOSERS) + end
    draw = rng.random()
    if draw < 0.4:
        text = text.lower()
    elif draw < 0.8:
        text = text[:1].upper() + text[1:]
    if rng.random() < 0.3:
        text = text.rstrip("?.!")
    if rng.random() < 0.12:
        text = _typo(text, rng)
    return text


def _typo(text: str, rng: np.random.Generator) -> str:
    """One slip of the keyboard in one word of four letters or more: a letter left out, doubled or swapped."""
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long_words:
        return text
    index = long_words[int(rng.integers(len(long_words)))]
    word, at = words[index], int(rng.integers(1, len(words[index]) - 1))
    kind = rng.random()
    if kind < 1 / 3:
        word = word[:at] + word[at + 1:]
    elif kind < 2 / 3:
        word = word[:at] + word[at] + word[at:]
    else:
        word = word[:at - 1] + word[at] + word[at - 1] + word[at + 1:]
    words[index] = word
    return " ".join(words)


def _unseen(draw: Callable[[], str], x: str) -> str:
    """``draw()`` again until its text (about ``x``) holds no held-out wording of the world's evaluation."""
    for _ in range(1000):
        text = draw()
        if not lang.is_heldout_wording(text, x):
            return text
    raise ValueError(f"the request grammar keeps writing held-out wording for {x!r}; change the phrasebook")
