"""What one request may ask for: beyond these a client could hold the one model for minutes or fill memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from nextmm.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    max_upload_mb: float = 20.0  # one medium: a data URL's decoded bytes, or a file uploaded on the page
    max_request_mb: float = 64.0  # one HTTP request body (base64 makes media a third larger)
    max_media: int = 4  # media in one request, all messages together (one page message on the page)
    max_messages: int = 64  # messages in one request
    request_timeout_s: float = 300.0  # waiting in the queue plus the turn; then the client gets a timeout error
    max_queue: int = 32  # turns waiting for the model; beyond, a request is refused as busy
    max_new_tokens: int = 512
    max_inference_steps: int = 100
    max_side: int = 1024  # height and width of generated images and videos
    max_frames: int = 64
    max_audio_seconds: float = 30.0
    keep_turns: int = 500  # served turns' folders kept under the output folder; the oldest go first

    @classmethod
    def from_config(cls, cfg: Mapping) -> Limits:
        known = {f.name for f in fields(cls)}
        unknown = set(cfg) - known
        if unknown:
            raise ConfigError(f"unknown limits {sorted(unknown)}: known are {sorted(known)}")
        limits = cls(**dict(cfg))
        for f in fields(limits):
            value = getattr(limits, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"limits.{f.name}={value}: give a number above 0")
        return limits

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 2**20)

    def check_settings(self, settings: Mapping) -> None:
        """A turn's settings (GenerationSettings fields) within this server's caps, else a ConfigError naming one."""
        caps = {"max_new_tokens": self.max_new_tokens, "num_inference_steps": self.max_inference_steps,
                "height": self.max_side, "width": self.max_side, "num_frames": self.max_frames,
                "audio_seconds": self.max_audio_seconds}
        for key, cap in caps.items():
            value = settings.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
                raise ConfigError(f"{key}={value}: this server allows at most {cap}")
