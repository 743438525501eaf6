"""Precomputed alignment targets: what each decoder's own text encoder makes of a caption.

Written once by ``python -m nextmm.precompute`` and read here, so training never runs the text encoders:

    <folder>/index.json                  {"modalities": {m: {"shape", "decoder", "count"}},
                                          "captions": {m: {caption: [shard, row]}}}
    <folder>/targets-00000.safetensors   one tensor per modality, (rows, *conditioning_shape)

``decoder`` is a fingerprint of the decoder config the targets were computed with; a run whose decoder
differs is refused rather than aligned to the wrong space.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open

from nextmm.errors import ConfigError

INDEX_FILE = "index.json"


def shard_name(shard: int) -> str:
    return f"targets-{shard:05d}.safetensors"


def decoder_fingerprint(decoder_cfg: Mapping) -> str:
    """A short hash of one decoder's config (its weights folder and architecture)."""
    plain = OmegaConf.to_container(decoder_cfg, resolve=True) if isinstance(decoder_cfg, DictConfig) else decoder_cfg
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


class AlignmentTargets:
    """Read access to a targets folder; ``get`` opens shards lazily, once per process (DataLoader workers too)."""

    def __init__(self, folder: str | Path, decoders_cfg: Mapping):
        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            raise ConfigError(
                f"no precomputed targets in {self.folder} ({INDEX_FILE} missing); write them with "
                "python -m nextmm.precompute model=<model> data=<data> output=<folder>"
            )
        index = json.loads(index_path.read_text())
        self.modalities: dict = index["modalities"]
        self.captions: dict = index["captions"]
        for modality, info in self.modalities.items():
            if modality in decoders_cfg and info["decoder"] != decoder_fingerprint(decoders_cfg[modality]):
                raise ConfigError(
                    f"targets in {self.folder} were computed for a different {modality} decoder than this model's; "
                    "recompute them with python -m nextmm.precompute for this model"
                )
        self._shards: dict[int, object] = {}

    def __getstate__(self) -> dict:  # open safetensors handles do not cross process boundaries
        return {**self.__dict__, "_shards": {}}

    def missing(self, wanted: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (modality, caption) pairs this folder has no target for."""
        return [(m, c) for m, c in wanted if c not in self.captions.get(m, {})]

    def get(self, modality: str, caption: str) -> torch.Tensor:
        """The target of one caption, (*conditioning_shape)."""
        shard, row = self.captions[modality][caption]
        if shard not in self._shards:
            self._shards[shard] = safe_open(str(self.folder / shard_name(shard)), framework="pt")
        return self._shards[shard].get_slice(modality)[row]
