"""``python -m nextmm.precompute model=<model> data=<data> output=<folder>``: alignment targets, once.

Every caption an answer of the data produces (caption pairs read as text -> X requests; T2M and MosIT
outputs) is encoded by its decoder's own text encoder, in batches, and written as safetensors shards
with an index from caption to (shard, row) (layout: nextmm.data.targets). The decoder-side and
modality-switching stages read the folder with ``targets=<folder>`` instead of running the text
encoders in every step. The folder is written aside and renamed, so it is whole or absent.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file
from tqdm.auto import tqdm

from nextmm import cli
from nextmm.atomic import staged_folder
from nextmm.data.dataset import read_sources
from nextmm.data.targets import INDEX_FILE, decoder_fingerprint, shard_name
from nextmm.decoders import Decoders
from nextmm.errors import ConfigError

log = logging.getLogger(__name__)


def output_captions(data_cfg) -> dict[str, list[str]]:
    """Distinct non-empty captions per modality, in first-seen order."""
    captions: dict[str, dict[str, None]] = defaultdict(dict)
    for record in read_sources(data_cfg, pairs="generation", pair_prompt="{caption}"):
        for turn in record.turns:
            for output in turn.outputs:
                captions[output.modality][output.caption] = None
    return {m: list(c) for m, c in captions.items()}


def precompute(
    decoders: Decoders, decoders_cfg, captions: dict[str, list[str]], output: Path, *, batch_size: int, shard_size: int
) -> Path:
    """Encode ``captions`` ({modality: [caption]}) and write the targets folder ``output``."""
    with staged_folder(output) as staging:
        index = {"modalities": {}, "captions": {}}
        shards: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
        for modality, texts in captions.items():
            rows = []
            for start in tqdm(range(0, len(texts), batch_size), desc=f"{modality} captions", unit="batch"):
                rows.append(decoders.encode_text(modality, texts[start : start + batch_size]).float().cpu())
            encoded = torch.cat(rows)  # (n, *conditioning_shape)
            for shard, start in enumerate(range(0, len(texts), shard_size)):
                shards[shard][modality] = encoded[start : start + shard_size].contiguous()
            index["captions"][modality] = {text: [i // shard_size, i % shard_size] for i, text in enumerate(texts)}
            index["modalities"][modality] = {
                "shape": list(encoded.shape[1:]),
                "decoder": decoder_fingerprint(decoders_cfg[modality]),
                "count": len(texts),
            }
            log.info("%s: %d captions -> %s", modality, len(texts), tuple(encoded.shape))
        for shard, tensors in shards.items():
            save_file(tensors, staging / shard_name(shard))
        (staging / INDEX_FILE).write_text(json.dumps(index))
    return output


def main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "output"):
        raise ConfigError("set output=<folder> for the targets (then pass targets=<folder> to a stage)")
    captions = output_captions(cfg.data)
    if not captions:
        raise ConfigError(
            "the data has no output captions (caption pairs, T2M or MosIT answers); nothing to precompute"
        )
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    decoders = Decoders(cfg.model.decoders, device=device)
    folder = precompute(
        decoders, cfg.model.decoders, captions, Path(cfg.output), batch_size=cfg.batch_size, shard_size=cfg.shard_size
    )
    print(f"wrote {sum(map(len, captions.values()))} targets to {folder}")


if __name__ == "__main__":
    cli.run("precompute", main)
