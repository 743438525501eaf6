"""Media a client sends (base64 data URLs in the API, uploaded files on the page) -> model input.

Nothing here opens a path a client names: the API takes media only as bytes inside the request, and the page
only the files Gradio received as uploads. A request is checked on arrival (type, size, base64) into
``Upload``s; the model's thread reads them (``read_uploads``: decoding is torch work, see
nextmm.serving.worker) through the same reader as the command line (nextmm.parts.preprocess), so a corrupt,
empty or unsupported medium is one readable UploadError, naming the medium as the client knows it
(``messages[0].content[1]``, ``beach.png``), never a server path.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from nextmm.errors import MediaError
from nextmm.inference.conversation import to_media
from nextmm.inference.prompt import Media, Message
from nextmm.modality import MODALITIES
from nextmm.parts.preprocess import SUPPORTED_EXTENSIONS

# MIME subtypes whose file extension differs from their name (audio/mpeg is an .mp3, video/quicktime a .mov)
SUBTYPE_EXTENSIONS = {"mpeg": ".mp3", "mp3": ".mp3", "wave": ".wav", "vnd.wave": ".wav", "quicktime": ".mov",
                      "msvideo": ".avi", "matroska": ".mkv", "jpg": ".jpeg"}
DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+)/(?P<subtype>[\w.+-]+)(?:;[\w.+-]+=[\w.+-]+)*;base64,(?P<data>.*)",
                      re.DOTALL)


def supported(modality: str) -> str:
    return " ".join(ext.lstrip(".") for ext in SUPPORTED_EXTENSIONS[modality])


def extension_for(modality: str, subtype: str, label: str) -> str:
    """The file extension of a MIME subtype or format name ("png", "x-wav", "mpeg"), if this modality reads it."""
    subtype = subtype.lower().removeprefix("x-")
    extension = SUBTYPE_EXTENSIONS.get(subtype, f".{subtype}")
    if extension not in SUPPORTED_EXTENSIONS[modality]:
        raise MediaError(f"{label}: unsupported {modality} type {subtype!r}; use one of {supported(modality)}")
    return extension


def decode_base64(text: str, label: str, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise MediaError(f"{label}: give the medium as base64 text")
    if len(text) > max_bytes * 4 // 3 + 4:  # refuse before decoding
        raise MediaTooLarge(f"{label}: the medium is larger than this server's limit of {max_bytes / 2**20:g} MB")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(f"{label}: not valid base64") from None
    if len(data) > max_bytes:
        raise MediaTooLarge(f"{label}: the medium is {len(data) / 2**20:.1f} MB, more than this server's limit of "
                            f"{max_bytes / 2**20:g} MB")
    return data


class MediaTooLarge(MediaError):
    """A medium over the server's upload limit."""


class UploadError(MediaError):
    """An upload that does not read as its modality; ``label`` names it as the client does."""

    def __init__(self, message: str, label: str):
        super().__init__(message)
        self.label = label


@dataclass(frozen=True)
class Upload:
    """A medium as received: checked for type and size, read into a Media on the model's thread."""

    modality: str
    label: str
    extension: str
    data: bytes | None = None  # an API request's decoded base64
    path: Path | None = None  # a file the page received

    def read(self) -> Media:
        if self.path is not None:
            return _read(self.modality, self.path, self.label)
        with tempfile.TemporaryDirectory(prefix="nextmm-upload-") as scratch:  # the reader needs a file
            path = Path(scratch) / f"upload{self.extension}"
            path.write_bytes(self.data)
            return _read(self.modality, path, self.label)


def read_uploads(messages: list[Message]) -> list[Message]:
    """The messages with every Upload read into a Media (the others as they are)."""
    return [replace(m, media=[u.read() if isinstance(u, Upload) else u for u in m.media]) for m in messages]


def upload_from_data_url(modality: str, url: str, label: str, max_bytes: int) -> Upload:
    """``data:image/png;base64,...`` (or audio/..., video/...) -> Upload. Any other URL is refused: the server
    fetches nothing and opens no path a client names."""
    if not isinstance(url, str):
        raise MediaError(f"{label}: give a data URL such as data:{modality}/...;base64,...")
    match = DATA_URL.fullmatch(url.strip())
    if match is None:
        shown = url if len(url) <= 40 else url[:37] + "..."
        raise MediaError(f"{label}: only base64 data URLs are accepted (data:{modality}/<type>;base64,...), "
                         f"not {shown!r}: this server fetches no URL and reads no path")
    if match["type"].lower() != modality:
        raise MediaError(f"{label}: a {match['type']} data URL where a {modality} belongs")
    extension = extension_for(modality, match["subtype"], label)
    return Upload(modality, label, extension, data=decode_base64(match["data"], label, max_bytes))


def upload_from_file(path: str | os.PathLike, label: str, max_bytes: int) -> Upload:
    """A file the page received as an upload -> Upload; the modality follows its extension (.gif is an image)."""
    path = Path(path)
    extension = path.suffix.lower()
    modality = next((m for m in MODALITIES if extension in SUPPORTED_EXTENSIONS[m]), None)
    if modality is None:
        kinds = "; ".join(f"{m}: {supported(m)}" for m in MODALITIES)
        raise MediaError(f"{label}: unsupported file type {extension or '(none)'!r}; attach one of {kinds}")
    size = path.stat().st_size
    if size > max_bytes:
        raise MediaTooLarge(f"{label}: the file is {size / 2**20:.1f} MB, more than this server's limit of "
                            f"{max_bytes / 2**20:g} MB")
    return Upload(modality, label, extension, path=path)


def _read(modality: str, path: Path, label: str) -> Media:
    try:
        return to_media(modality, path)
    except MediaError as error:  # the reader names the file by its path: name it as the client knows it
        raise UploadError(str(error).replace(str(path), label), label) from None
