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


# Words by which an answer names a medium it hands over ("Here is a picture ...": nextmm.inference.claims).
MEDIUM_WORDS = {
    "image": ("picture", "pictures", "image", "images", "photo", "photos", "photograph", "drawing", "illustration",
              "painting", "sketch", "snapshot", "still", "pic", "artwork", "postcard", "wallpaper", "portrait"),
    "audio": ("sound", "sounds", "audio", "recording", "noise", "soundscape", "soundtrack", "music", "song", "tune",
              "melody", "ambience"),
    "video": ("video", "videos", "clip", "clips", "film", "movie", "footage", "animation", "timelapse", "gif"),
}
# Words that name every medium at once: a vlog is an image, its sound and a video.
ALL_MEDIA_WORDS = ("vlog", "vlogs")
# How a sentence hands something over: it claims the media it names.
CLAIM_OPENINGS = ("here is", "here's", "here are", "here you go", "here it is", "i made", "i have made", "i've made",
                  "i drew", "i painted", "i recorded", "i filmed", "i created", "i generated", "this is your",
                  "enjoy your", "your")
