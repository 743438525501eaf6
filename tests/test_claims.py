"""Which media an answer's words hand over (nextmm.inference.claims)."""

import pytest

from nextmm.inference.claims import claimed_media


@pytest.mark.parametrize("text, media", [
    ("Sure! Here is a picture of the beach and the sound of the waves.", ["image", "audio"]),
    ("Here is how it sounds.", ["audio"]),
    ("OK, here is a video of the rain.", ["video"]),
    ("Here you go: calm music.", ["audio"]),
    ("Here is your surf vlog! A picture, a sound and a clip.", ["image", "audio", "video"]),
    ("Your city vlog is ready: a scene, its soundtrack and a video.", ["image", "audio", "video"]),
    ("I made a photo of the dunes for you.", ["image"]),
    ("At the beach you hear the waves: a rushing roar.", []),
    ("I can describe pictures, sounds and videos, and make new ones of the places I know.", []),
    ("I can't make that: I only know the beach. Ask me for a picture, a sound or a video of one of them.", []),
    ("It shows a surfer on a wave.", []),
    ("", []),
])
def test_claimed_media(text, media):
    assert claimed_media(text) == media
