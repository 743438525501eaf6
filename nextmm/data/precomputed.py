"""Precomputed tensors: what a frozen model makes of the data, written once so that training never runs it.

``python -m nextmm precompute`` writes two kinds, read here:

    targets    each output caption through its decoder's own text encoder (the alignment target of the
               decoder-side and modality-switching stages), keyed by caption
    features   each input medium through the frozen ImageBind (what the input projector reads), keyed by the
               medium's path relative to data.root

Both have one layout:

    <folder>/index.json                 {"modalities": {m: {"shape", <owner>, "count"}},
                                         <entries>: {m: {key: [shard, row]}}, "bad": {m: {key: reason}}}
    <folder>/<kind>-00000.safetensors   one tensor per modality, (rows, *shape)

<owner> ("decoder", "encoder") is a fingerprint of the model config the rows were computed with; a run whose
model differs is refused rather than fed rows of another model's space. <entries> is "captions" or "media".
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from safetensors.torch import save_file

from nextmm.atomic import staged_folder
from nextmm.errors import ConfigError

INDEX_FILE = "index.json"
KINDS = {  # kind (also the stage option that reads it) -> (entries field, owner field)
    "targets": ("captions", "decoder"),
    "features": ("media", "encoder"),
}


def shard_name(kind: str, shard: int) -> str:
    return f"{kind}-{shard:05d}.safetensors"


def fingerprint(cfg: Mapping) -> str:
    """A short hash of a model part's config (its weights path and architecture)."""
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def media_key(path: str | Path, root: Path) -> str:
    """How a features folder names a medium: its path relative to data.root (as written), else absolute."""
    path = Path(path)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def write_precomputed(
    output: Path,
    kind: str,
    rows: Mapping[str, tuple[list[str], torch.Tensor]],
    fingerprints: Mapping[str, str],
    *,
    shard_size: int,
    bad: Mapping[str, Mapping[str, str]] | None = None,
) -> Path:
    """Write ``rows`` ({modality: (keys, tensor (n, *shape))}) as a ``kind`` folder; whole or absent."""
    entries_field, owner_field = KINDS[kind]
    with staged_folder(output) as staging:
        index = {"modalities": {}, entries_field: {}, "bad": {m: dict(b) for m, b in (bad or {}).items()}}
        shards: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        for modality, (keys, tensor) in rows.items():
            for shard, start in enumerate(range(0, len(keys), shard_size)):
                shards[shard][modality] = tensor[start : start + shard_size].contiguous()
            index[entries_field][modality] = {key: [i // shard_size, i % shard_size] for i, key in enumerate(keys)}
            index["modalities"][modality] = {
                "shape": list(tensor.shape[1:]), owner_field: fingerprints[modality], "count": len(keys)}
        for shard, tensors in shards.items():
            save_file(tensors, staging / shard_name(kind, shard))
        (staging / INDEX_FILE).write_text(json.dumps(index))
    return output


class Precomputed:
    """Read access to a ``kind`` folder; ``get`` opens shards lazily, once per process (DataLoader workers too).

    ``owners``: the fingerprint this run's model has for each modality; a folder computed with another is refused.
    """

    def __init__(self, folder: str | Path, kind: str, owners: Mapping[str, str]):
        self.folder, self.kind = Path(folder), kind
        entries_field, owner_field = KINDS[kind]
        index_path = self.folder / INDEX_FILE
        if not index_path.is_file():
            raise ConfigError(
                f"no precomputed {kind} in {self.folder} ({INDEX_FILE} missing); write them with "
                f"python -m nextmm precompute kind={kind} model=<model> data=<data> output=<folder>"
            )
        index = json.loads(index_path.read_text())
        self.modalities: dict = index["modalities"]
        self.entries: dict = index[entries_field]
        self.bad: dict = index.get("bad", {})
        for modality, info in self.modalities.items():
            if modality in owners and info[owner_field] != owners[modality]:
                raise ConfigError(
                    f"{kind} in {self.folder} were computed for a different {modality} {owner_field} than this "
                    f"model's; recompute them with python -m nextmm precompute kind={kind} for this model, or pass "
                    f"{kind}=null"
                )
        self._shards: dict[int, object] = {}

    def __getstate__(self) -> dict:  # open safetensors handles do not cross process boundaries
        return {**self.__dict__, "_shards": {}}

    def missing(self, wanted: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The (modality, key) pairs this folder has neither a row nor a recorded failure for."""
        return [(m, k) for m, k in wanted if k not in self.entries.get(m, {}) and k not in self.bad.get(m, {})]

    def problem(self, modality: str, key: str) -> str | None:
        """Why ``key`` has no row (the error met when it was computed), or None."""
        return self.bad.get(modality, {}).get(key)

    def get(self, modality: str, key: str) -> torch.Tensor:
        """The row of one key, (*shape)."""
        shard, row = self.entries[modality][key]
        if shard not in self._shards:
            self._shards[shard] = safe_open(str(self.folder / shard_name(self.kind, shard)), framework="pt")
        return self._shards[shard].get_slice(modality)[row]


def decoder_fingerprints(decoders_cfg: Mapping) -> dict[str, str]:
    return {modality: fingerprint(cfg) for modality, cfg in decoders_cfg.items()}


def encoder_fingerprints(encoder_cfg: Mapping, modalities: Iterable[str]) -> dict[str, str]:
    """One ImageBind embeds every modality: the same fingerprint for each."""
    return dict.fromkeys(modalities, fingerprint(encoder_cfg))
