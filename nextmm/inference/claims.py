"""Which media an answer's words claim to hand over: "Here is a picture of the beach." claims an image.

A sentence claims the media it names when it opens as a hand-over ("here is", "here you go", "I made", "your
... vlog is ready"; ``modality.CLAIM_OPENINGS``); a sentence that only talks about a medium ("At the beach you
hear the waves.", "I can make pictures of the places I know.") claims none. Generation produces every claimed
medium (``GenerationSettings.keep_claims``), so an answer never says "here is a sound" without one.

    claimed_media("Sure! Here is a picture of the beach and the sound of the waves.")   # ["image", "audio"]
"""

from __future__ import annotations

import re

from nextmm.modality import ALL_MEDIA_WORDS, CLAIM_OPENINGS, MEDIUM_WORDS, MODALITIES

_SENTENCES = re.compile(r"[^.!?\n]+")
_WORDS = re.compile(r"[a-z']+")
_MEDIUM_OF = {word: m for m, words in MEDIUM_WORDS.items() for word in words}


def claimed_media(text: str) -> list[str]:
    """The media ``text`` claims to hand over, in MODALITIES order."""
    claimed: set[str] = set()
    for sentence in _SENTENCES.findall(text.lower()):
        sentence = sentence.strip().removeprefix("sure").removeprefix("ok").strip(" ,")
        if not sentence.startswith(CLAIM_OPENINGS):
            continue
        words = _WORDS.findall(sentence)
        if any(word in ALL_MEDIA_WORDS for word in words):
            claimed.update(MODALITIES)
        claimed.update(_MEDIUM_OF[word] for word in words if word in _MEDIUM_OF)
    return [m for m in MODALITIES if m in claimed]
