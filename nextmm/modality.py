"""The modalities nextmm reads and writes, and their signal tokens.

Modality is always a key ("image", "audio", "video"); code loops over `MODALITIES` rather than
repeating itself per modality.
"""

MODALITIES = ("image", "audio", "video")

# Prefix of each modality's signal tokens: [IMG0] [IMG1] ... as in NExT-GPT.
SIGNAL_PREFIX = {"image": "IMG", "audio": "AUD", "video": "VID"}

# Markers around a projected media token in the prompt, as the original's "<Img> ... </Img>".
MEDIA_START = "<Img>"
MEDIA_END = "</Img>"


def signal_tokens(modality: str, count: int) -> list[str]:
    """The signal tokens of one modality, e.g. ``["[IMG0]", ..., "[IMG3]"]``."""
    check_modality(modality)
    return [f"[{SIGNAL_PREFIX[modality]}{i}]" for i in range(count)]


def check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}: use one of {', '.join(MODALITIES)}")
