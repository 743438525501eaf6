"""``python -m nextmm precompute kind=<targets|features> model=<model> data=<data> output=<folder>``: once.

What a frozen model makes of the data, computed once instead of in every training step (layout:
nextmm.data.precomputed); the folder is written aside and renamed, so it is whole or absent.

    kind=targets    every caption an answer produces (caption pairs read as text -> X requests; T2M and MosIT
                    outputs) through its decoder's own text encoder. Stages read it with targets=<folder>:
                    decoder side, modality switching.
    kind=features   every input medium (caption pairs read as X -> text, instruction inputs) through the frozen
                    ImageBind, its preprocessing in DataLoader workers. Stages read it with features=<folder>:
                    encoder side, modality switching. A file that cannot be read is recorded with its error,
                    and a stage skips its samples as bad, as it would reading the file itself.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from nextmm.checks import check, resolve_device, whole
from nextmm.config import resolve_path
from nextmm.data.dataset import check_sources, read_sources
from nextmm.data.precomputed import (
    KINDS,
    decoder_fingerprints,
    encoder_fingerprints,
    media_key,
    write_precomputed,
)
from nextmm.errors import ConfigError, MediaError
from nextmm.modality import MODALITIES
from nextmm.parts.decoders import Decoders
from nextmm.parts.encoder import ImageBindEncoder
from nextmm.parts.preprocess import load_media

log = logging.getLogger(__name__)
Rows = dict[str, tuple[list[str], torch.Tensor]]  # modality -> (keys, tensor (n, *shape))


# ------------------------------------------------------------------------------------------- targets
def output_captions(data_cfg) -> dict[str, list[str]]:
    """Distinct non-empty captions per modality, in first-seen order."""
    captions: dict[str, dict[str, None]] = defaultdict(dict)
    for record in read_sources(data_cfg, pairs="generation", pair_prompt="{caption}"):
        for turn in record.turns:
            for output in turn.outputs:
                captions[output.modality][output.caption] = None
    return {m: list(c) for m, c in captions.items()}


def precompute_targets(decoders: Decoders, captions: dict[str, list[str]], *, batch_size: int) -> Rows:
    """{modality: (captions, conditioning (n, *conditioning_shape))}."""
    rows = {}
    for modality, texts in captions.items():
        encoded = [decoders.encode_text(modality, texts[start : start + batch_size]).float().cpu()
                   for start in tqdm(range(0, len(texts), batch_size), desc=f"{modality} captions", unit="batch")]
        rows[modality] = (texts, torch.cat(encoded))
        log.info("%s: %d captions -> %s", modality, len(texts), tuple(rows[modality][1].shape))
    return rows


# ------------------------------------------------------------------------------------------ features
def input_media(data_cfg) -> dict[str, list[Path]]:
    """Distinct input media files per modality, in first-seen order."""
    media: dict[str, dict[Path, None]] = defaultdict(dict)
    for record in read_sources(data_cfg, pairs="comprehension", pair_prompt="{caption}"):
        for turn in record.turns:
            for ref in turn.inputs:
                media[ref.modality][Path(ref.path)] = None
    return {m: list(p) for m, p in media.items()}


class _MediaFiles(Dataset):
    """One modality's files, each read into ImageBind's input layout (or the reason it cannot be)."""

    def __init__(self, modality: str, paths: Sequence[Path]):
        self.modality, self.paths = modality, list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | str]:
        try:
            return index, load_media(self.modality, self.paths[index])
        except MediaError as error:
            return index, str(error)


def _stack_readable(items):
    """A batch of (index, tensor or error) -> (indices read, their tensors stacked or None, {index: error})."""
    indices = [i for i, data in items if not isinstance(data, str)]
    tensors = [data for _, data in items if not isinstance(data, str)]
    failed = {i: data for i, data in items if isinstance(data, str)}
    return indices, torch.stack(tensors) if tensors else None, failed


def precompute_features(encoder: ImageBindEncoder, media: dict[str, list[Path]], root: Path, *, batch_size: int,
                        num_workers: int) -> tuple[Rows, dict[str, dict[str, str]]]:
    """{modality: (media keys, ImageBind features (n, embed_dim))} and {modality: {key: why it was not read}}."""
    rows, bad = {}, {}
    for modality, paths in media.items():
        loader = DataLoader(_MediaFiles(modality, paths), batch_size=batch_size, num_workers=num_workers,
                            collate_fn=_stack_readable)
        keys, features, bad[modality] = [], [], {}
        for indices, data, failed in tqdm(loader, desc=f"{modality} media", unit="batch"):
            if data is not None:
                keys += [media_key(paths[i], root) for i in indices]
                features.append(encoder(modality, data).float().cpu())
            bad[modality].update({media_key(paths[i], root): reason for i, reason in failed.items()})
        if features:
            rows[modality] = (keys, torch.cat(features))
        log.info("%s: %d media -> %d features, %d unreadable", modality, len(paths), len(keys), len(bad[modality]))
    return rows, bad


# ---------------------------------------------------------------------------------------------- main
def main(cfg: DictConfig) -> None:
    if cfg.kind not in KINDS:
        raise ConfigError(f"kind={cfg.kind!r}: choose targets (decoder text-encoder conditioning of output captions) "
                          "or features (ImageBind vectors of input media)")
    if OmegaConf.is_missing(cfg, "output"):
        raise ConfigError(f"set output=<folder> for the {cfg.kind} (then pass {cfg.kind}=<folder> to a stage)")
    rows = (whole(1), "a whole number >= 1")
    check({"batch_size": cfg.batch_size, "shard_size": cfg.shard_size}, {"batch_size": rows, "shard_size": rows})
    if Path(cfg.output).exists() and not Path(cfg.output).is_dir():
        raise ConfigError(f"output={cfg.output} is a file: give a folder for the {cfg.kind}")
    device = resolve_device(cfg.device)
    check_sources(cfg.data)
    if cfg.kind == "targets":
        captions = output_captions(cfg.data)
        if not captions:
            raise ConfigError(
                "the data has no output captions (caption pairs, T2M or MosIT answers); nothing to precompute")
        decoders = Decoders(cfg.model.decoders, device=device)
        rows, bad = precompute_targets(decoders, captions, batch_size=cfg.batch_size), None
        owners = decoder_fingerprints(cfg.model.decoders)
    else:
        media = input_media(cfg.data)
        if not media:
            raise ConfigError("the data has no input media (caption pairs, LLaVA, VideoChat or MosIT inputs); "
                              "nothing to precompute")
        encoder = ImageBindEncoder.from_config(cfg.model.encoder).to(device)
        root = resolve_path(cfg.data.get("root") or ".")
        rows, bad = precompute_features(encoder, media, root, batch_size=cfg.batch_size,
                                        num_workers=cfg.num_workers)
        owners = encoder_fingerprints(cfg.model.encoder, MODALITIES)
    folder = write_precomputed(Path(cfg.output), cfg.kind, rows, owners, shard_size=cfg.shard_size, bad=bad)
    failed = sum(map(len, (bad or {}).values()))
    print(f"wrote {sum(len(keys) for keys, _ in rows.values())} {cfg.kind} to {folder}"
          + (f" ({failed} unreadable media recorded; their samples are skipped as bad)" if failed else ""))
