"""Sharded engines (FSDP, DeepSpeed ZeRO), chosen by the accelerate config a run is launched with.

Under them no process holds the whole optimizer state (ZeRO-2) or the whole model (FSDP), so a checkpoint's
model and optimizer go through accelerate's ``save_state``/``load_state``: each process writes and reads its own
shard, in the engine's format, under ``checkpoints/step-N/engine/``. The trained parts (``model/`` of a checkpoint,
``final/``) are gathered through ``accelerator.get_state_dict`` and written as for any run. Single-process and DDP
runs keep their checkpoints as they are: the main process holds everything there.

The shipped accelerate configs are in nextmm/conf/accelerate/ (``python -m nextmm.conf.accelerate NAME`` prints
a path); docs/training.md tells how to launch them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nextmm.errors import ConfigError

log = logging.getLogger(__name__)

SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)
ENGINE_DIR = "engine"  # accelerate's save_state: each process's shard of the model and the optimizer
ENGINE_FILE = "engine.json"  # how the checkpoint was written: {"distributed_type", "num_processes"}
# DeepSpeed's CPU Adam, which accelerate swaps in for AdamW when the optimizer is offloaded, takes only lr and
# weight_decay from it: its betas are its defaults.
CPU_ADAM_BETAS = (0.9, 0.999)


def is_sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type in SHARDED


def engine_record(accelerator: Accelerator) -> dict:
    return {"distributed_type": str(accelerator.distributed_type.value), "num_processes": accelerator.num_processes}


def check_engine(saved: Mapping, accelerator: Accelerator, folder: Path) -> None:
    """Refuse to resume ``folder`` (written as ``saved`` says) in a run whose processes or engine differ.

    A sharded checkpoint holds one shard per process in its engine's format, so both must match; a checkpoint
    of a single-process or DDP run holds whole state, which any run of that kind with as many processes reads.
    """
    now = engine_record(accelerator)
    if saved["num_processes"] != now["num_processes"]:
        raise ConfigError(
            f"{folder} was written by {saved['num_processes']} processes; resume with the same number "
            f"(this run has {now['num_processes']})"
        )
    kinds = {kind.value for kind in SHARDED}
    was, runs = saved["distributed_type"], now["distributed_type"]
    if (was in kinds or runs in kinds) and was != runs:
        raise ConfigError(
            f"{folder} was written under {was or 'DDP or one process'}, this run is {runs}: resume with the "
            "accelerate config it was launched with (accelerate launch --config_file ...)"
        )


def check_resumable(checkpoints: Path, accelerator: Accelerator) -> None:
    """Before anything is built: every checkpoint under ``checkpoints`` that records its engine fits this run
    (checkpoints written before engine.json existed are checked when they are loaded)."""
    for record in sorted(checkpoints.rglob(f"step-*/{ENGINE_FILE}")):
        check_engine(json.loads(record.read_text()), accelerator, record.parent)


def configure_engine(accelerator: Accelerator, cfg: DictConfig) -> None:
    """Give DeepSpeed the run's micro-batch size and gradient clipping (it clips, not the loop), refusing an
    accelerate config that sets them otherwise, and refuse what its offloaded optimizer would change (betas, a
    fused AdamW insisted on); refuse a
    weight average under FSDP, where each process would average only its shard and checkpoint the main one's."""
    if accelerator.distributed_type == DistributedType.FSDP:
        if OmegaConf.select(cfg, "ema.decay", default=None) is not None:
            raise ConfigError(f"ema.decay={cfg.ema.decay}: the weight average is not supported under FSDP (each "
                              "process holds a shard of it); set ema.decay=null, or train with DDP or DeepSpeed")
        return
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    wanted = {
        "train_micro_batch_size_per_gpu": ("train.batch_size", OmegaConf.select(cfg, "train.batch_size", default=1)),
        "gradient_clipping": ("optimizer.max_grad_norm", OmegaConf.select(cfg, "optimizer.max_grad_norm")),
    }
    for key, (setting, value) in wanted.items():
        if value is None:
            continue
        if ds.get(key, "auto") == "auto":
            ds[key] = value
        elif ds[key] != value:
            raise ConfigError(f"the DeepSpeed config sets {key}={ds[key]}, the run {setting}={value}: make them "
                              f"equal (or leave {key} out of the DeepSpeed config)")
    offloaded = ds["zero_optimization"].get("offload_optimizer", {}).get("device", "none") not in ("none", None)
    betas = OmegaConf.select(cfg, "optimizer.betas", default=None)
    if offloaded and OmegaConf.select(cfg, "optimizer.fused", default=None) is True:
        raise ConfigError("optimizer.fused=true: with the optimizer offloaded, DeepSpeed's CPU Adam steps instead of "
                          "torch's fused AdamW; set optimizer.fused=auto")
    if offloaded and betas is not None and tuple(betas) != CPU_ADAM_BETAS:
        raise ConfigError(f"optimizer.betas={list(betas)}: with the optimizer offloaded, DeepSpeed's CPU Adam steps "
                          f"with betas {list(CPU_ADAM_BETAS)}; set optimizer.betas={list(CPU_ADAM_BETAS)}")


def gathered_state(accelerator: Accelerator, prepared: nn.Module, part: nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict of ``part``, a submodule of the prepared module, keyed as ``part.state_dict()``.

    Every process must call it (FSDP gathers the shards); the main process gets the tensors, the others may
    get an empty dict.
    """
    full = accelerator.get_state_dict(prepared)
    unwrapped = accelerator.unwrap_model(prepared)
    prefix = next((name for name, module in unwrapped.named_modules() if module is part), None)
    if prefix is None:
        raise ValueError(f"{type(part).__name__} is not part of the prepared {type(unwrapped).__name__}")
    prefix = f"{prefix}." if prefix else ""
    return {key[len(prefix):]: value for key, value in full.items() if key.startswith(prefix)}
