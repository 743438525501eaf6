"""OpenAI's chat-completions format <-> nextmm's messages, settings and turns.

Request: ``{"model", "messages": [...], "modalities"?, "seed"?, "temperature"?, "top_p"?, "max_tokens"?, ...}``.
A message's ``content`` is a string or a list of parts:

    {"type": "text", "text": "..."}
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}      OpenAI's
    {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}  OpenAI's (wav mp3 flac ogg)
    {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}}      nextmm's, shaped as image_url

The messages are the conversation: every user message's media are read and encoded again on every request
(one that does not read as its type is a 400 naming its part), and an assistant message enters the context
as its text (media it carried are not read back). ``system`` and ``developer`` messages' text is put before
the next user message's text (the prompt format has no system part). ``modalities``: absent or null, the
model decides which media to produce; a list (it must hold "text") gives exactly the media wanted: each
listed one is always produced, the others are not returned, and ``["text"]`` renders nothing. Besides
OpenAI's knobs, a request may set nextmm's: ``num_inference_steps``, ``guidance_scale``, ``height``,
``width``, ``num_frames``, ``audio_seconds``.

Response: OpenAI's ``chat.completion`` object; ``choices[0].message.content`` is the text (``usage`` counts
the positions the LLM read, one per medium, and the tokens it wrote, signal tokens included), and the media are
listed in ``choices[0].message.media`` as ``{"type": "image"|"audio"|"video", "url", "mime_type"}``, URLs
under this server's ``/outputs/``. A produced sound is also given as OpenAI gives audio,
``message.audio = {"id", "data": <base64 WAV>, "expires_at", "transcript"}``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nextmm.errors import ConfigError, MediaError
from nextmm.inference.conversation import GenerationSettings, Turn
from nextmm.inference.prompt import Message
from nextmm.modality import MODALITIES
from nextmm.serving.files import mime_type
from nextmm.serving.limits import Limits
from nextmm.serving.uploads import (
    MediaTooLarge,
    decode_base64,
    extension_for,
    Upload,
    upload_from_data_url,
)

# request keys -> GenerationSettings fields
SETTING_KEYS = {"seed": "seed", "temperature": "temperature", "top_p": "top_p", "max_tokens": "max_new_tokens",
                "max_completion_tokens": "max_new_tokens", "num_inference_steps": "num_inference_steps",
                "guidance_scale": "guidance_scale", "height": "height", "width": "width", "num_frames": "num_frames",
                "audio_seconds": "audio_seconds"}
# OpenAI keys accepted with the values that mean "nothing special"; another value is refused, never ignored
NEUTRAL = {"n": (1, None), "stream": (False, None), "logprobs": (False, None), "tools": (None, []),
           "tool_choice": (None, "none"), "response_format": (None, {"type": "text"}), "stream_options": (None,),
           "parallel_tool_calls": (None, False), "stop": (None,)}
# OpenAI keys that change nothing here (bookkeeping; the audio voice: a sound is always a WAV of the scene)
IGNORED = {"user", "metadata", "store", "service_tier", "audio", "frequency_penalty", "presence_penalty"}
MEDIA_PARTS = ("image_url", "input_audio", "video_url")
ROLES = ("system", "developer", "user", "assistant")
AUDIO_EXPIRES_S = 3600


class RequestError(Exception):
    """A request that cannot be served as sent: an HTTP status, and OpenAI's error fields."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.param, self.code, self.kind = status, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    messages: list[Message]
    settings: dict = field(default_factory=dict)  # GenerationSettings fields
    modalities: list[str] | None = None  # the media asked for; None: the model decides


def parse_request(body, model_name: str, limits: Limits) -> ChatRequest:
    """A chat-completions body -> messages (media as checked Uploads) and checked settings; RequestError if not."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    for key in ("model", "messages"):
        if key not in body:
            raise RequestError(f"missing required parameter {key!r}", param=key, code="missing_required_parameter")
    if body["model"] != model_name:
        raise RequestError(f"the model {body['model']!r} is not served here: this server serves {model_name!r}",
                           status=404, param="model", code="model_not_found")
    for key, value in body.items():
        known = {"model", "messages", "modalities", *SETTING_KEYS, *IGNORED}
        if key in NEUTRAL and value not in NEUTRAL[key]:
            raise RequestError(f"{key}={value!r} is not supported by this server", param=key,
                               code="unsupported_parameter")
        if key not in known and key not in NEUTRAL:
            raise RequestError(f"unknown parameter {key!r}", param=key, code="unknown_parameter")
    request = ChatRequest(_messages(body["messages"], limits), modalities=_modalities(body.get("modalities")))
    request.settings = _settings(body, request.modalities, limits)
    return request


def _settings(body: Mapping, modalities: list[str] | None, limits: Limits) -> dict:
    settings = {field_: body[key] for key, field_ in SETTING_KEYS.items() if body.get(key) is not None}
    if modalities is not None:
        settings.update(outputs=modalities or None, render=bool(modalities))
    try:
        GenerationSettings().updated(**settings)
        limits.check_settings(settings)
    except ConfigError as error:
        key = str(error).partition("=")[0]
        param = next((k for k, f in SETTING_KEYS.items() if f == key and k in body), key)
        raise RequestError(str(error).replace(f"{key}=", f"{param}=", 1), param=param,
                           code="invalid_value") from None
    return settings


def _modalities(value) -> list[str] | None:
    """The media asked for: None (the model decides) or a list of MODALITIES (empty: text only)."""
    if value is None:
        return None
    allowed = ("text", *MODALITIES)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not set(value) <= set(allowed):
        raise RequestError(f"modalities={value!r}: give a list of {', '.join(allowed)}", param="modalities",
                           code="invalid_value")
    if "text" not in value:
        raise RequestError("modalities must include 'text': every answer has text", param="modalities",
                           code="invalid_value")
    return [m for m in MODALITIES if m in value]


def _messages(value, limits: Limits) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise RequestError("messages must be a non-empty list", param="messages")
    if len(value) > limits.max_messages:
        raise RequestError(f"{len(value)} messages, more than this server's limit of {limits.max_messages}",
                           param="messages", code="too_many_messages")
    _count_media(value, limits)  # before decoding any
    messages: list[Message] = []
    system: list[str] = []
    for i, item in enumerate(value):
        where = f"messages[{i}]"
        text, media = _content(item.get("content"), item["role"], where, limits)
        if item["role"] in ("system", "developer"):
            system.append(text)
        elif item["role"] == "user":
            messages.append(Message("user", "\n".join([*system, text]), media))
            system = []
        else:
            messages.append(Message("assistant", text))
    if not messages or messages[-1].role != "user":
        raise RequestError("the last message must be the user's: it is the one answered", param="messages")
    if not messages[-1].text.strip() and not messages[-1].media:
        raise RequestError("the last user message is empty: give text or media", param="messages")
    return messages


def _count_media(messages: list, limits: Limits) -> None:
    """Every message has a role, and the user messages hold no more media than the server takes."""
    count = 0
    for i, item in enumerate(messages):
        if not isinstance(item, dict) or item.get("role") not in ROLES:
            raise RequestError(f"messages[{i}]: give an object with a role of {', '.join(ROLES)}",
                               param=f"messages[{i}]")
        parts = item.get("content") if item["role"] == "user" and isinstance(item.get("content"), list) else []
        for j, part in enumerate(parts):
            count += isinstance(part, dict) and part.get("type") in MEDIA_PARTS
            if count > limits.max_media:
                raise RequestError(f"messages[{i}].content[{j}]: more than this server's limit of {limits.max_media} "
                                   "media per request", param=f"messages[{i}].content[{j}]", code="too_many_media")


def _content(content, role: str, where: str, limits: Limits) -> tuple[str, list[Upload]]:
    """A message's text and media (media only in user messages; an assistant's are not read)."""
    if content is None and role == "assistant":
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestError(f"{where}.content: give a string or a list of parts", param=f"{where}.content")
    texts, media = [], []
    for j, part in enumerate(content):
        label = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
            continue
        if kind not in MEDIA_PARTS:
            raise RequestError(f"{label}: give a part of type text, image_url, input_audio or video_url",
                               param=label)
        if role != "user":
            continue  # an assistant's media are not read back; other roles carry text
        media.append(_medium(kind, part.get(kind), label, limits))
    return "".join(texts) if len(texts) <= 1 else "\n".join(texts), media


def _medium(kind: str, value, label: str, limits: Limits) -> Upload:
    try:
        if kind == "input_audio":
            if not isinstance(value, dict) or not isinstance(value.get("format"), str):
                raise MediaError(f"{label}: give input_audio as {{\"data\": <base64>, \"format\": \"wav\"}}")
            extension = extension_for("audio", value["format"], label)
            data = decode_base64(value.get("data"), label, limits.max_upload_bytes)
            return Upload("audio", label, extension, data=data)
        modality = "image" if kind == "image_url" else "video"
        url = value.get("url") if isinstance(value, dict) else None
        return upload_from_data_url(modality, url, label, limits.max_upload_bytes)
    except MediaTooLarge as error:
        raise RequestError(str(error), status=413, param=label, code="media_too_large") from None
    except MediaError as error:
        raise RequestError(str(error), param=label, code="invalid_media") from None


def completion(turn: Turn, *, turn_id: str, model_name: str, files: list[tuple[str, Path]],
               url: Callable[[Path], str]) -> dict:
    """The ``chat.completion`` object for a turn whose media were written to ``files``."""
    created = int(time.time())
    message: dict = {
        "role": "assistant",
        "content": turn.text,
        "refusal": None,
        "media": [{"type": m, "url": url(path), "mime_type": mime_type(path.name)} for m, path in files],
    }
    sound = next((path for m, path in files if m == "audio"), None)
    if sound is not None:
        message["audio"] = {"id": f"audio-{turn_id}", "data": base64.b64encode(sound.read_bytes()).decode("ascii"),
                            "expires_at": created + AUDIO_EXPIRES_S, "transcript": turn.text}
    return {
        "id": f"chatcmpl-{turn_id}",
        "object": "chat.completion",
        "created": created,
        "model": model_name,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": turn.prompt_tokens, "completion_tokens": turn.completion_tokens,
                  "total_tokens": turn.prompt_tokens + turn.completion_tokens},
        "nextmm": {"seed": turn.settings.get("seed"), "settings": turn.settings, "signals": turn.signals,
                   "timings_s": {k: round(v, 4) for k, v in turn.timings_s.items()}},
    }


