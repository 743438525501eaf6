"""Each served turn's files, and the only files the server hands out.

A turn is written by ``write_turn`` (PNG, WAV, MP4 with the sound as soundtrack, result.json) into
``<output_dir>/turns/<turn id>/``. ``path`` answers a request for a file only when the id and the name have
the shapes this module writes, and the file lies inside that folder: no other file on the disk is reachable.
The newest ``keep`` turns stay; older folders are removed as new ones come.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
from pathlib import Path

from nextmm.inference.conversation import Turn
from nextmm.inference.outputs import media_path, write_turn

log = logging.getLogger(__name__)

TURN_ID = re.compile(r"[0-9a-f]{24}")
FILE_NAME = re.compile(r"(image|audio|video)_\d{1,4}\.(png|wav|mp4)|result\.json")
MIME_TYPES = {"png": "image/png", "wav": "audio/wav", "mp4": "video/mp4", "json": "application/json"}


def mime_type(name: str) -> str:
    return MIME_TYPES[name.rpartition(".")[2]]


class TurnFiles:
    def __init__(self, output_dir: str | Path, *, keep: int):
        self.root = Path(output_dir).resolve() / "turns"
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self._lock = threading.Lock()

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(12)

    def write(self, turn_id: str, turn: Turn, *, prompt: str, model: str, seed: int) -> list[tuple[str, Path]]:
        """Write the turn; returns (modality, path) of each medium in the answer's order."""
        folder = self.root / turn_id
        write_turn(turn, folder, prompt=prompt, model=model, seed=seed)
        self._prune()
        return [(modality, media_path(folder, modality, index)) for modality, index in turn.outputs]

    def path(self, turn_id: str, name: str) -> Path | None:
        """The file to serve for ``/outputs/<turn_id>/<name>``, or None."""
        if not TURN_ID.fullmatch(turn_id) or not FILE_NAME.fullmatch(name):
            return None
        path = (self.root / turn_id / name).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path

    def _prune(self) -> None:
        with self._lock:
            folders = sorted((p for p in self.root.iterdir() if p.is_dir() and TURN_ID.fullmatch(p.name)),
                             key=lambda p: p.stat().st_mtime)
            for old in folders[: max(len(folders) - self.keep, 0)]:
                shutil.rmtree(old, ignore_errors=True)
                log.info("removed served turn %s (keeping the newest %d)", old.name, self.keep)

