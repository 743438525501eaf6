"""Checkpoints of a run (exact resume) and its final trained parts; every folder appears whole or not at all."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nextmm.atomic import replace_dir
from nextmm.config import resolve_path
from nextmm.errors import ConfigError
from nextmm.weights.trained import load_trained_parts, save_trained_parts

if TYPE_CHECKING:
    from nextmm.training.run import BadSamples

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
FINAL = "final"
MODEL_DIR = "model"
STATE_FILE = "training.pt"
RUN_CONFIG = "run.yaml"


def init_from(model: nn.Module, path: str | None) -> None:
    """Start from a previous stage's trained parts (its final/ or a checkpoint), names and shapes checked strictly."""
    if not path:
        return
    folder = resolve_path(path)
    if (folder / MODEL_DIR).is_dir():  # a checkpoint folder
        folder = folder / MODEL_DIR
    load_trained_parts(model, folder)
    log.info("initialised the trained parts from %s", folder)


class Checkpoints:
    """Atomic checkpoints under <output_dir>/checkpoints, the newest ``keep_last`` kept."""

    def __init__(self, output_dir: str | Path, accelerator: Accelerator, keep_last: int):
        self.folder = Path(output_dir) / CHECKPOINTS
        self.accelerator, self.keep_last = accelerator, keep_last

    def latest(self) -> Path | None:
        done = sorted(self.folder.glob("step-*")) if self.folder.is_dir() else []
        return done[-1] if done else None

    def save(
        self, step: int, model: nn.Module, optimizer, scheduler, position: Mapping, bad: BadSamples, cfg: DictConfig,
        average: EMAModel | None = None,
    ) -> Path:
        """Write the step's checkpoint from every process (each its own RNG state); returns its folder.

        model/ holds the step's own weights, which a resumed run continues from; the average, if any, is
        in training.pt.
        """
        accelerator = self.accelerator
        final = self.folder / f"step-{step:08d}"
        staging = self.folder / f".step-{step:08d}.partial"
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        torch.save(rng_state(), staging / f"rng-{accelerator.process_index}.pt")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_trained_parts(model, staging / MODEL_DIR)
            state = {
                "step": step,
                "position": dict(position),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "bad": bad.state_dict(),
                "num_processes": accelerator.num_processes,
            }
            if accelerator.scaler is not None:  # fp16 loss scaling
                state["scaler"] = accelerator.scaler.state_dict()
            if average is not None:
                state["average"] = average.state_dict()
            torch.save(state, staging / STATE_FILE)
            OmegaConf.save(cfg, staging / RUN_CONFIG, resolve=True)
            replace_dir(staging, final)
            for old in sorted(self.folder.glob("step-*"))[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def restore(
        self, folder: Path, model: nn.Module, optimizer, scheduler, bad: BadSamples, cfg: DictConfig,
        average: EMAModel | None = None,
    ) -> tuple[int, dict]:
        """Load everything ``save`` wrote; the RNGs last, so nothing after this draws before the next step."""
        state = torch.load(folder / STATE_FILE, weights_only=True)
        if state["num_processes"] != self.accelerator.num_processes:
            raise ConfigError(
                f"{folder} was written by {state['num_processes']} processes; resume with the same number "
                f"(this run has {self.accelerator.num_processes})"
            )
        saved = OmegaConf.load(folder / RUN_CONFIG)
        if list(saved.trainable) != list(cfg.trainable):
            raise ConfigError(f"{folder} trained {list(saved.trainable)}, this run trains {list(cfg.trainable)}")
        saved_ema = OmegaConf.to_container(saved.ema) if "ema" in saved else {"decay": None, "start": 0}
        if saved_ema != OmegaConf.to_container(cfg.ema):
            raise ConfigError(f"{folder} averaged the weights with ema={saved_ema}: resume with the same ema settings")
        load_trained_parts(model, folder / MODEL_DIR)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        bad.load_state_dict(state["bad"])
        if average is not None:
            average.load_state_dict(state["average"])
            average.to(device=self.accelerator.device)
        set_rng_state(torch.load(folder / f"rng-{self.accelerator.process_index}.pt", weights_only=True))
        log.info("resumed from %s at step %d", folder, state["step"])
        return state["step"], state["position"]


def save_final(model: nn.Module, output_dir: str | Path, accelerator: Accelerator) -> Path:
    """The trained parts of the finished run, loadable as a model: model=<output_dir>/final."""
    folder = Path(output_dir) / FINAL
    if accelerator.is_main_process:
        save_trained_parts(model, folder)
        log.info("trained parts written to %s (use model=%s)", folder, folder)
    accelerator.wait_for_everyone()
    return folder


def rng_state() -> dict:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
