"""The toyworld: a small procedural world of scenes with pictures, sounds, motion and words.

    concepts   what each scene looks, sounds and moves like (CONCEPTS, concept_table)
    render     Scene, render_image / render_video / render_audio, render_sample
    sound      the audio synthesisers
    language   captions, requests, questions and answers; train and held-out wordings
    build      python -m nextmm world output=data/toyworld: the data set (docs/toyworld.md)
"""

from nextmm.toyworld.concepts import (
    CONCEPT_NAMES,
    CONCEPTS,
    Concept,
    concept_table,
    get_concept,
)
from nextmm.toyworld.language import (
    canonical_caption,
    captions,
    concept_of,
    concepts_in,
    phrase,
)
from nextmm.toyworld.render import (
    Sample,
    Scene,
    Settings,
    render_audio,
    render_image,
    render_sample,
    render_video,
    sample_scene,
)

__all__ = [
    "CONCEPTS",
    "CONCEPT_NAMES",
    "Concept",
    "Sample",
    "Scene",
    "Settings",
    "canonical_caption",
    "captions",
    "concept_of",
    "concept_table",
    "concepts_in",
    "get_concept",
    "phrase",
    "render_audio",
    "render_image",
    "render_sample",
    "render_video",
    "sample_scene",
]
