"""Optimizer, learning-rate schedule and the weight average a run's final/ holds."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import torch
from diffusers.training_utils import EMAModel
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from nextmm.errors import ConfigError

log = logging.getLogger(__name__)


def build_optimizer(module: nn.Module, cfg: Mapping) -> torch.optim.Optimizer:
    """AdamW over ``module``'s trainable parameters; ``fused`` (optimizer.fused): auto takes torch's fused kernel
    (one kernel for every tensor's update) for parameters on CUDA, true insists on it on any device torch has one
    for (CPU too), false keeps torch's default (foreach on accelerators, a loop over tensors on CPU). Auto leaves
    CPU runs, the toy world's among them, stepping as they always did."""
    params = [p for p in module.parameters() if p.requires_grad]
    fused = cfg.get("fused", "auto")
    if not (fused == "auto" or isinstance(fused, bool)):
        raise ConfigError(f"optimizer.fused={fused}: give auto, true or false")
    devices = sorted({p.device.type for p in params})
    supported = all(d in _get_fused_kernels_supported_devices() for d in devices) and all(
        p.is_floating_point() for p in params)
    if fused is True and not supported:
        raise ConfigError(f"optimizer.fused=true: torch {torch.__version__} has no fused AdamW for parameters on "
                          f"{', '.join(devices)}; set optimizer.fused=auto or false")
    fused = supported and devices == ["cuda"] if fused == "auto" else fused
    log.info("AdamW: %s", "fused" if fused else "not fused")
    return torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"],
                             fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping, max_steps: int) -> LambdaLR:
    """Linear warmup, then cosine decay to zero over ``total_steps`` (default: the run's max_steps) or constant.

    Set ``total_steps`` when a run is meant to stop early and continue later: the schedule then does not
    depend on where this invocation stops.
    """
    total, warmup, schedule = cfg["total_steps"] or max_steps, cfg["warmup_steps"], cfg["schedule"]
    if schedule not in ("cosine", "constant"):
        raise ConfigError(f"unknown optimizer.schedule {schedule!r}: use cosine or constant")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return LambdaLR(optimizer, factor)


def build_average(params: Iterable[nn.Parameter], cfg: Mapping, max_steps: int) -> EMAModel | None:
    """The running average of the trained weights that final/ holds; None when ``ema.decay`` is null.

    After each optimizer step past ``ema.start`` the average takes in the weights with the decay
    min(ema.decay, n / (n + 1)), n counting those steps from 0: the plain mean of the weights seen so far
    until that decay reaches ``ema.decay``, an exponential moving average from then on. ema.decay=1 is the
    plain mean of every step past ``start`` (Polyak averaging, SWA's tail average). diffusers' EMAModel
    keeps the shadow weights, beside the parameters and on their device.
    """
    decay, start = cfg["decay"], cfg["start"]
    if decay is None:
        return None
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
        raise ConfigError(f"ema.decay={decay} must lie in (0, 1]: 0.999 averages exponentially, 1 is the plain "
                          "mean, null keeps the last step's weights")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < max_steps:
        raise ConfigError(f"ema.start={start} must be a whole number of steps from 0 to train.max_steps - 1 "
                          f"({max_steps - 1}): the average counts the steps after it")
    return EMAModel(params, decay=float(decay), update_after_step=start, use_ema_warmup=True, inv_gamma=1, power=1)

