"""Requests and questions in people's words (nextmm.toyworld.asking) and the answers the toy model learns."""

import re
from pathlib import Path

import numpy as np
import pytest

from nextmm.inference.claims import claimed_media
from nextmm.modality import MODALITIES
from nextmm.toyworld import asking, concept_of, concepts_in
from nextmm.toyworld import language as lang
from nextmm.toyworld import phrasebook as book
from nextmm.toyworld.concepts import CONCEPT_NAMES

COMBINATIONS = [("image",), ("audio",), ("video",), ("image", "audio"), ("video", "image"), ("audio", "video"),
                ("video", "audio", "image")]


def _placeholders(answer: str) -> list[str]:
    return re.findall(r"<(image|audio|video)>", answer)


def test_a_request_is_answered_with_its_media_in_order_naming_the_place():
    rng = np.random.default_rng(0)
    for concept in CONCEPT_NAMES:
        for media in COMBINATIONS:
            exchange = asking.media_request(media, concept, rng)
            assert exchange.media == media and _placeholders(exchange.answer) == list(media)
            assert concept_of(exchange.answer) == concept  # one name per place, whatever the request called it
            assert claimed_media(exchange.answer) == [m for m in MODALITIES if m in media]
    assert asking.media_request(["audio"], "rain", np.random.default_rng(3)) == \
        asking.media_request(["audio"], "rain", np.random.default_rng(3))  # by seed


def test_the_grammar_asks_every_which_way():
    rng = np.random.default_rng(1)
    prompts = [asking.media_request(media, concept, rng).prompt for concept in CONCEPT_NAMES
               for media in COMBINATIONS for _ in range(20)]
    assert len(set(prompts)) > 0.95 * len(prompts)
    written = " ".join(prompts).lower()
    for words in (" pic", "footage", "let me hear", "sketch", "film", "soundscape", "could you", "the woods",
                  "a rainy afternoon", "downtown", " pls", "thank"):
        assert words in written, words
    assert sum(p == p.lower() for p in prompts) > 0.3 * len(prompts)  # people often type in lower case
    assert sum(not p.endswith(("?", ".", "!")) for p in prompts) > 0.3 * len(prompts)


def test_no_message_is_heldout_wording_of_the_worlds_evaluation():
    rng = np.random.default_rng(2)
    texts = [asking.media_request(media, concept, rng).prompt for concept in CONCEPT_NAMES for media in COMBINATIONS
             for _ in range(5)]
    texts += [asking.question(concept, rng).prompt for concept in CONCEPT_NAMES for _ in range(20)]
    texts += [asking.vlog(concept, rng).prompt for concept in CONCEPT_NAMES for _ in range(10)]
    texts += [asking.describe(m, rng) for m in MODALITIES for _ in range(30)]
    written = "\n".join(texts).lower()
    assert not [f for f in lang.heldout_fragments() if f.lower() in written]


def test_places_name_their_own_place_and_outside_things_none():
    for concept, names in book.PLACES.items():
        for name in names:
            assert concepts_in(name) <= {concept}, name
        assert book.CANONICAL[concept] in names or concept_of(book.CANONICAL[concept]) == concept
    for thing in book.OUTSIDE:
        assert not concepts_in(thing), thing
    for concept, names in book.MUSIC.items():
        assert all(concepts_in(name) <= {concept} for name in names)


def test_questions_chat_and_outside_things_get_words_only():
    rng = np.random.default_rng(3)
    for concept in CONCEPT_NAMES:
        exchange = asking.question(concept, rng)
        assert not exchange.media and not claimed_media(exchange.answer) and concept_of(exchange.answer) == concept
    for _ in range(30):
        exchange = asking.unknown(rng)
        assert not exchange.media and not _placeholders(exchange.answer) and not claimed_media(exchange.answer)
        assert len(concepts_in(exchange.answer)) == len(CONCEPT_NAMES)  # it says which places it knows
        chat = asking.chat(rng)
        assert not claimed_media(chat.answer) and not _placeholders(chat.answer)


def test_vlogs_music_follow_ups_and_attached_media():
    rng = np.random.default_rng(4)
    for concept in CONCEPT_NAMES:
        exchange = asking.vlog(concept, rng)
        assert exchange.media == ("image", "audio", "video") and "vlog" in exchange.prompt.lower()
        assert _placeholders(exchange.answer) == ["image", "audio", "video"]
        cross = asking.cross_media("image", "audio", concept, rng)
        assert cross.media == ("audio",) and concept_of(cross.answer) == concept
        assert not concepts_in(cross.prompt)  # the place is the attachment's, not named
        follow = asking.follow_up("video", concept, rng)
        assert _placeholders(follow.answer) == ["video"] and concept_of(follow.answer) == concept
    assert _placeholders(asking.music_request("sunset", rng).answer) == ["audio"]
    assert "calm" in asking.music_request("sunset", rng).answer


@pytest.mark.parametrize("seed", range(5))
def test_typing_keeps_the_words_but_one(seed):
    rng = np.random.default_rng(seed)
    text = "could you please draw the mountains for me?"
    for _ in range(50):
        typed = asking.typed(text, rng)
        words = [w.strip("?.!,") for w in text.lower().split()]
        kept = [w for w in re.findall(r"[a-z']+", typed.lower()) if w in words]
        assert len(kept) >= len(words) - 1, typed


def test_the_people_file_is_read_by_the_evaluation_alone():
    """The held-out file of people's wordings is never read to build training text: only eval names it."""
    root = Path(__file__).resolve().parents[1]
    readers = [p.relative_to(root).as_posix() for p in (root / "nextmm").rglob("*.py")
               if "people_prompts" in p.read_text(encoding="utf-8") or "PEOPLE_FILE" in p.read_text(encoding="utf-8")]
    assert readers == ["nextmm/toyworld/eval.py"]
