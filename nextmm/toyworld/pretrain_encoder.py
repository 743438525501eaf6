"""Pretraining the encoder: a tiny ImageBind learns the toyworld by InfoNCE, before the NExT-GPT stages.

    python -m nextmm world output=data/toyworld
    python -m nextmm train pretrain_encoder data_root=data/toyworld output_dir=runs/pretrain_encoder train.max_steps=2000

Each scene of scenes.json gives its image, audio, video and the caption written for each of them; the loss
sums InfoNCE over the `pairs` of nextmm/conf/stage/pretrain_encoder.yaml ("text" pairs with a medium use that
medium's caption). ImageBindEncoder is frozen by design, so the recipe trains the ImageBindModel it wraps,
and only the towers named in `trainable`. It ends with, in output_dir:

    imagebind.pth    ImageBindModel state dict: encoder.checkpoint=<it> loads it (torch.load, weights_only)
    config.yaml      the resolved run config
    retrieval.json   R@1 text <-> image, audio, video on the held-out scenes of eval/samples.json, by concept
    checkpoints/     the run's newest checkpoints (one training loop: nextmm.training.loop); resume=true continues

Each scene's random draws (clip-crop, word dropout, general text) are seeded by its place in the run, so a resumed
run trains on exactly what an uninterrupted one does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate
from tqdm.auto import tqdm

from nextmm.atomic import staged_file
from nextmm.data import BatchStream
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES
from nextmm.parts.encoder import IMAGEBIND_MODALITY, ImageBindEncoder, text_token_ids
from nextmm.parts.preprocess import VIDEO_SPATIAL_CROPS as SPATIAL_CROPS
from nextmm.parts.preprocess import (
    load_media,
    load_video_clip_frames,
    video_clips_tensor,
)
from nextmm.toyworld import language as lang
from nextmm.toyworld import wordings
from nextmm.training.checkpoints import CHECKPOINTS, Checkpoints, ModuleWeights
from nextmm.training.contrastive import InfoNCE, retrieval_at_1
from nextmm.training.loop import ModuleLoss, train_loop
from nextmm.training.run import BatchSize, start_run

STAGE = "pretrain_encoder"
log = logging.getLogger(STAGE)
# What a concept's general text can hold (data.general_text_from; general_sentences and SceneDataset.text)
GENERAL_TEXT = ("description", "glossary", "alt_text", "media_sentences")


class SceneDataset(Dataset):
    """Scenes -> {"image": (3, 224, 224), "audio": (3, 1, 128, 204), "video": (S, 3, 2, 224, 224),
    "text": (3, 77) CLIP ids of each medium's caption in MODALITIES order (each word left out with probability
    `word_dropout`; with probability `general_text` a sentence of the concept's general text, of the parts
    `general_text_from`, instead of the caption), "concept": () long}.

    `video_clips` keeps that many of the 15 clip-crops of a video, drawn at random (for training: ImageBind
    averages the clips' embeddings, so one random clip-crop per step costs 1/15 and sees them all over
    the epochs); the videos' frames are then decoded once, up front, and kept (about 120 kB a scene), since
    decoding dominates a step otherwise. None keeps all 15, read from the file each time (held-out scenes).
    """

    def __init__(self, scenes: list[dict], folder: Path, concepts: list[str], video_clips: int | None = None,
                 word_dropout: float = 0.0, general_text: float = 0.0, general_text_from: Sequence[str] = GENERAL_TEXT):
        self.scenes, self.folder, self.video_clips, self.word_dropout = scenes, folder, video_clips, word_dropout
        self.general_text, self.general_text_from = general_text, tuple(general_text_from)
        self.concept_index = {c: i for i, c in enumerate(concepts)}
        self.clip_frames: list[list[torch.Tensor]] = []
        if video_clips is not None:
            paths = [folder / scene["video"] for scene in scenes]
            with ThreadPoolExecutor(4) as pool:  # the work is in ffmpeg processes, so threads suffice
                self.clip_frames = list(tqdm(pool.map(load_video_clip_frames, paths), total=len(paths),
                                             desc="decoding videos", leave=False))

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        scene = self.scenes[index]
        item = {m: load_media(m, self.folder / scene[m]) for m in ("image", "audio")}
        if self.video_clips is None:
            item["video"] = load_media("video", self.folder / scene["video"])
        else:
            clips = self.clip_frames[index]
            picks = torch.randperm(len(clips) * SPATIAL_CROPS)[: self.video_clips].sort().values
            item["video"] = torch.stack(
                [video_clips_tensor([clips[int(p) // SPATIAL_CROPS]])[int(p) % SPATIAL_CROPS] for p in picks])
        item["text"] = text_token_ids([drop_words(self.text(scene, m), self.word_dropout) for m in MODALITIES])
        item["concept"] = torch.tensor(self.concept_index[scene["concept"]])
        return item


    def text(self, scene: dict, modality: str) -> str:
        """The medium's caption, or with probability ``general_text`` a sentence of its concept's general text:
        one of general_sentences, or with "media_sentences" as often as each of them a new sentence in the
        medium's words about one of the concept's subjects (language.media_sentence: "Ben made a short film of
        the ocean shore.")."""
        if self.general_text > 0 and torch.rand(()) < self.general_text:
            sentences = general_sentences(scene["concept"], modality, self.general_text_from)
            choice = int(torch.randint(len(sentences) + ("media_sentences" in self.general_text_from), ()))
            if choice < len(sentences):
                return sentences[choice]
            return lang.media_sentence(scene["concept"], modality, np.random.default_rng(int(torch.randint(2**31, ()))))
        return scene["captions"][modality]


def general_sentences(concept: str, modality: str, parts: Sequence[str] = GENERAL_TEXT) -> tuple[str, ...]:
    """The fixed sentences of the world's general text about ``concept`` among ``parts``: "description", its look,
    sound or motion (as ``modality`` shows); "glossary", its wordings.GLOSSARY sentences, which use the words of the
    held-out phrases in sentences of their own; "alt_text", its wordings.ALT_TEXT sentence, which names its
    keywords ("sundown", "drizzle"). ("media_sentences" are drawn anew each time: SceneDataset.text.) Web-scale
    pairs give a real ImageBind's text tower such words; here they would otherwise be in no training text, and a
    word never read keeps its random embedding."""
    words = lang.words(concept)
    sentences = {"description": ({"image": words.looks, "audio": words.sounds, "video": words.moves}[modality],),
                 "glossary": wordings.GLOSSARY[concept], "alt_text": (wordings.ALT_TEXT[concept],)}
    return tuple(sentence for part in GENERAL_TEXT if part in parts for sentence in sentences.get(part, ()))


def drop_words(text: str, p: float) -> str:
    """``text`` with each word left out with probability ``p`` (one at least is kept): a caption augmentation that
    makes the text tower read the concept from any of the words it knows rather than from whole phrases, so a
    caption in new wording, with some words it never saw, still lands near its concept."""
    words = text.split()
    if p <= 0 or len(words) < 2:
        return text
    keep = torch.rand(len(words)) >= p
    if not keep.any():
        keep[torch.randint(len(words), ())] = True
    return " ".join(word for word, kept in zip(words, keep) if kept)


def load_scenes(root: Path) -> tuple[list[dict], list[dict]]:
    """Training scenes (scenes.json) and held-out scenes (eval/samples.json, paths made root-relative)."""
    path = root / "scenes.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: data_root must be a toyworld (python -m nextmm world output=...)")
    train = json.loads(path.read_text(encoding="utf-8"))
    heldout_path = root / "eval" / "samples.json"
    heldout = json.loads(heldout_path.read_text(encoding="utf-8")) if heldout_path.is_file() else []
    heldout = [{**s, **{m: f"eval/{s[m]}" for m in MODALITIES}} for s in heldout]
    return train, heldout


def set_trainable_towers(model: nn.Module, towers: list[str]) -> list[str]:
    """Train exactly the ImageBind towers named (ImageBind modality keys: text, vision, audio, ...): their
    preprocessor, trunk, head and postprocessor. Returns the sorted names of the trainable parameters."""
    known = set(model.modality_trunks.keys())
    if unknown := set(towers) - known:
        raise ConfigError(f"unknown ImageBind towers {sorted(unknown)} in trainable: use {sorted(known)}")
    for name, param in model.named_parameters():
        param.requires_grad_(name.split(".")[1] in towers)
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


def embed(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Embeddings (B, D) of each medium and of each medium's caption ("text:image", ...), on the model's device."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    out = {}
    for modality in MODALITIES:  # image and video share the vision key, so one call each
        key = IMAGEBIND_MODALITY[modality]
        out[modality] = model({key: batch[modality]})[key]
    batch_size = batch["text"].shape[0]
    text = model({"text": batch["text"].flatten(0, 1)})["text"].view(batch_size, len(MODALITIES), -1)  # (B, 3, D)
    out.update({f"text:{m}": text[:, i] for i, m in enumerate(MODALITIES)})
    return out


def contrastive_loss(
    model: nn.Module, loss_fn: InfoNCE, batch: dict[str, torch.Tensor], pairs: list[list[str]], by_concept: bool
) -> dict[str, torch.Tensor]:
    """{"loss": sum over pairs, "<a>-<b>": each pair's InfoNCE}; "text" paired with X is X's caption."""
    embeddings = embed(model, batch)
    labels = batch["concept"].to(embeddings["text:image"].device) if by_concept else None
    terms = {}
    for a, b in pairs:
        a_key = f"text:{b}" if a == "text" else a
        b_key = f"text:{a}" if b == "text" else b
        terms[f"{a}-{b}"] = loss_fn(embeddings[a_key], embeddings[b_key], labels)
    terms["loss"] = sum(terms.values())
    return terms


@torch.no_grad()
def heldout_retrieval(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Concept R@1 text -> X and X -> text for each medium over all held-out scenes."""
    was_training = model.training
    model.eval()
    parts = [({k: v.cpu() for k, v in embed(model, batch).items()}, batch["concept"]) for batch in loader]
    model.train(was_training)
    embeddings = {k: torch.cat([p[0][k] for p in parts]) for k in parts[0][0]}
    concepts = torch.cat([p[1] for p in parts])
    metrics = {}
    for m in MODALITIES:
        metrics[f"text->{m}"] = retrieval_at_1(embeddings[f"text:{m}"], embeddings[m], concepts, concepts)
        metrics[f"{m}->text"] = retrieval_at_1(embeddings[m], embeddings[f"text:{m}"], concepts, concepts)
    return metrics


def train(cfg: DictConfig) -> dict:
    """Train as `cfg` says; returns per-step losses, the held-out R@1 and the checkpoint path."""
    # 1. the run and the data
    if OmegaConf.is_missing(cfg, "output_dir") or OmegaConf.is_missing(cfg, "data_root"):
        raise ConfigError("set data_root=<toyworld folder> and output_dir=<folder>")
    root, output_dir = Path(cfg.data_root), Path(cfg.output_dir)
    train_scenes, heldout_scenes = load_scenes(root)
    concepts = sorted({s["concept"] for s in train_scenes + heldout_scenes})
    if len(train_scenes) < cfg.train.batch_size:
        raise ConfigError(f"{len(train_scenes)} training scenes in {root}, fewer than train.batch_size={cfg.train.batch_size}")
    for key in ("word_dropout", "general_text"):
        if not 0 <= cfg.data[key] < 1:
            raise ConfigError(f"data.{key}={cfg.data[key]}: give a probability in [0, 1)")
    general_text_from = list(cfg.data.general_text_from)
    if unknown := sorted(set(general_text_from) - set(GENERAL_TEXT)):
        raise ConfigError(f"data.general_text_from: unknown parts {unknown}; name some of {list(GENERAL_TEXT)}")
    if cfg.data.general_text > 0 and not general_text_from:
        raise ConfigError(f"data.general_text={cfg.data.general_text} but data.general_text_from is empty: name some "
                          f"of {list(GENERAL_TEXT)}")
    accelerator = start_run(cfg, STAGE)
    if accelerator.num_processes > 1:  # its batches are not shared out: every process would train on the same
        raise ConfigError(f"{STAGE} runs in one process (CUDA when present); start it without accelerate launch")
    torch.manual_seed(cfg.seed)
    train_set = SceneDataset(train_scenes, root, concepts, video_clips=cfg.data.video_clips,
                             word_dropout=cfg.data.word_dropout, general_text=cfg.data.general_text,
                             general_text_from=general_text_from)
    # each scene's random draws (clip-crops, word dropout, general text) are seeded by its place in the run
    batches = BatchStream(train_set, batch_size=cfg.train.batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed,
                          collate_fn=default_collate, seeded_samples=True)

    # 2. the model and what trains
    device = accelerator.device  # CUDA when present unless device=cpu
    encoder = ImageBindEncoder.from_config(cfg.encoder)
    model = encoder.model.to(device)  # ImageBindEncoder forces eval and no_grad, so the recipe trains what it wraps
    trainable = set_trainable_towers(model, list(cfg.trainable))
    model.train()
    log.info("training %d tensors, %d parameters, of towers %s, on %s", len(trainable),
             sum(p.numel() for p in model.parameters() if p.requires_grad), list(cfg.trainable), device)

    # 3. the loss, trained on the one loop; checkpoints under <output_dir>/checkpoints (resume=true continues)
    loss_fn = InfoNCE(cfg.loss.temperature, learnable=cfg.loss.learnable_temperature).to(device)
    pairs = [list(pair) for pair in cfg.pairs]

    def terms(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values = contrastive_loss(model, loss_fn, batch, pairs, cfg.loss.by_concept)
        return {**values, "temperature": torch.tensor(loss_fn.temperature)}

    def optimizer_for(module: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in module.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)

    checkpoints = Checkpoints(output_dir / CHECKPOINTS, accelerator, cfg.checkpoint.keep_last,
                              ModuleWeights(imagebind=model, infonce=loss_fn), cfg)
    result = train_loop(
        accelerator, name=STAGE, loss=ModuleLoss(terms, imagebind=model, infonce=loss_fn), batches=batches,
        optimizer_for=optimizer_for, schedule=cfg.optimizer, max_steps=cfg.train.max_steps, checkpoints=checkpoints,
        checkpoint_every=cfg.checkpoint.every, resume=cfg.resume,
        terms=["loss", *(f"{a}-{b}" for a, b in pairs), "temperature"],
        batch_size=lambda batch: BatchSize(len(batch["concept"])), log_every=cfg.logging.every,
    )

    # 5. held-out retrieval
    retrieval = {}
    if heldout_scenes:
        heldout = DataLoader(SceneDataset(heldout_scenes, root, concepts), batch_size=cfg.train.batch_size,
                             num_workers=cfg.data.num_workers)
        retrieval = heldout_retrieval(model, heldout)
        log.info("held-out R@1 (%d scenes, by concept): %s", len(heldout_scenes),
                 " ".join(f"{k} {v:.3f}" for k, v in retrieval.items()))
    else:
        log.warning("no held-out scenes in %s/eval/samples.json: retrieval not measured", root)

    # 6. the checkpoint: a plain ImageBindModel state dict, as imagebind_huge.pth
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = output_dir / "imagebind.pth"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with staged_file(checkpoint) as path:
        torch.save(state, path)
    with staged_file(output_dir / "config.yaml") as path:
        OmegaConf.save(cfg, path, resolve=True)
    with staged_file(output_dir / "retrieval.json") as path:
        path.write_text(json.dumps(retrieval, indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s (use encoder.checkpoint=%s)", checkpoint, checkpoint)
    accelerator.end_training()
    return {"losses": result["losses"], "run_losses": result["run_losses"], "retrieval": retrieval,
            "checkpoint": checkpoint, "trainable": trainable}


def main(cfg: DictConfig) -> None:
    train(cfg)
