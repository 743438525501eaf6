"""A NExT-GPT stage on the one training loop (nextmm.training.loop); each stage recipe brings its data and loss.

A stage is a numbered sequence of plain steps: the run, the model and what trains; the recipe's data and loss;
the loop, resumed from the newest checkpoint with resume=true (optimizer, schedule, weight average ``ema``);
the trained parts (or their average) for the next stage. The recipes (nextmm.recipes) call ``train_stage``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from accelerate.utils import DistributedType
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from nextmm.checks import check, flag, whole
from nextmm.data import BatchStream
from nextmm.errors import ConfigError
from nextmm.model import NextMM
from nextmm.training.checkpoints import (
    CHECKPOINTS,
    Checkpoints,
    TrainedParts,
    init_from,
    save_final,
)
from nextmm.training.loop import train_loop
from nextmm.training.optimization import build_optimizer
from nextmm.training.run import (
    TERMS,
    BadSamples,
    log_trainable,
    stage_batch_size,
    start_run,
)
from nextmm.training.trainable import set_trainable, store_frozen_in

log = logging.getLogger(__name__)


def check_stage_resume(cfg: DictConfig) -> Callable[[DictConfig, Path], None]:
    """A stage resumes only a run that trained the same parts with the same weight average."""

    def check(saved: DictConfig, folder: Path) -> None:
        if list(saved.trainable) != list(cfg.trainable):
            raise ConfigError(f"{folder} trained {list(saved.trainable)}, this run trains {list(cfg.trainable)}")
        saved_ema = OmegaConf.to_container(saved.ema) if "ema" in saved else {"decay": None, "start": 0}
        if saved_ema != OmegaConf.to_container(cfg.ema):
            raise ConfigError(f"{folder} averaged the weights with ema={saved_ema}: resume with the same ema settings")

    return check


def check_packing(cfg: DictConfig) -> None:
    """``train.pack_sequences`` and ``train.pack_length``: in range, every sample fits a row, and an attention
    kernel that keeps packed samples apart (transformers 5.23 does so for eager and sdpa from the restarting
    position ids; for flash_attention_2 only in a batch of one row)."""
    pack, length = cfg.train.pack_sequences, cfg.train.pack_length
    check({"train.pack_sequences": pack, "train.pack_length": length}, {
        "train.pack_sequences": (flag, "true or false"),
        "train.pack_length": (whole(1), "a whole number of tokens >= 1, or null for each batch's longest sample"),
    })
    if length is not None and not pack:
        raise ConfigError(f"train.pack_length={length} does nothing without train.pack_sequences=true: set that, or "
                          "train.pack_length=null")
    if not pack:
        return
    if length is not None and length < cfg.data.max_length:
        raise ConfigError(f"train.pack_length={length} is below data.max_length={cfg.data.max_length}: a sample that "
                          "long would fit no row; raise train.pack_length, lower data.max_length, or set null")
    attention = OmegaConf.select(cfg, "model.llm.attn_implementation", default=None)
    if attention == "flash_attention_2":
        raise ConfigError("train.pack_sequences=true with model.llm.attn_implementation=flash_attention_2: transformers "
                          "keeps packed samples apart there only in a batch of one row; set "
                          "model.llm.attn_implementation=sdpa")


def train_stage(
    cfg: DictConfig,
    stage: str,
    *,
    dataset_for: Callable[[NextMM], Dataset],
    loss_for: Callable[[NextMM], nn.Module],
) -> dict:
    """Train one stage as ``cfg`` says; returns the per-step losses and metrics and the final folder."""
    # 1. run, model, and what trains (the stage config's `trainable:`)
    if OmegaConf.select(cfg, "model.llm.quantize", default=None) is not None:
        raise ConfigError(f"model.llm.quantize={cfg.model.llm.quantize} is for answering: a stage trains the LLM in "
                          "full precision here (QLoRA is not supported); set model.llm.quantize=null")
    if OmegaConf.select(cfg, "model.llm.merge_for_inference", default=None):
        raise ConfigError("model.llm.merge_for_inference=true folds LoRA into the LLM's weights, for answering: a stage "
                          "trains LoRA itself; set model.llm.merge_for_inference=false")
    check_packing(cfg)
    accelerator = start_run(cfg, stage)
    model = NextMM.from_config(cfg.model, device=accelerator.device)
    init_from(model, cfg.init_from)
    log_trainable(model, set_trainable(model, cfg.trainable))
    # FSDP2 shards a unit's parameters in one dtype; LoRA and its frozen base share a unit, so they stay alike there
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    stored = 0 if fsdp else store_frozen_in(model, cfg.train.mixed_precision)
    if stored:
        log.info("frozen pretrained parameters kept in %s: %s", cfg.train.mixed_precision, f"{stored:,}")

    # 2. the recipe's data and loss
    dataset = dataset_for(model)
    loss = loss_for(model)
    batches = BatchStream(
        dataset, batch_size=cfg.train.batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed,
        rank=accelerator.process_index, world=accelerator.num_processes,
    )

    # 3. the loop, resumed from the newest checkpoint with resume=true
    bad = BadSamples(cfg.data.max_bad_share, cfg.data.bad_check_after)
    checkpoints = Checkpoints(Path(cfg.output_dir) / CHECKPOINTS, accelerator, cfg.checkpoint.keep_last,
                              TrainedParts(model), cfg, check=check_stage_resume(cfg))
    result = train_loop(
        accelerator, name=stage, loss=loss, batches=batches,
        optimizer_for=lambda module: build_optimizer(module, cfg.optimizer), schedule=cfg.optimizer,
        max_steps=cfg.train.max_steps, checkpoints=checkpoints, checkpoint_every=cfg.checkpoint.every,
        resume=cfg.resume, terms=TERMS, batch_size=stage_batch_size, log_every=cfg.logging.every, ema=cfg.ema,
        bad=bad,
    )

    # 4. the trained parts (their average with ema.decay set), for the next stage or for generation
    bad.report()
    final = save_final(model, cfg.output_dir, accelerator, prepared=result["prepared"])
    accelerator.end_training()
    return {"losses": result["losses"], "history": result["history"], "final": final, "bad": bad.bad,
            "seen": bad.seen}
