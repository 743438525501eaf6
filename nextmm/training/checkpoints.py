"""Checkpoints of a run (exact resume) and its final trained parts; every folder appears whole or not at all."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nextmm.atomic import replace_dir
from nextmm.config import resolve_path
from nextmm.errors import ConfigError
from nextmm.weights.trained import load_trained_parts, save_trained_parts

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


class TrainedParts:
    """A stage's weights in a checkpoint: the model's trained parts, as final/ holds them (safetensors)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def save(self, folder: Path) -> None:
        save_trained_parts(self.model, folder)

    def load(self, folder: Path) -> None:
        load_trained_parts(self.model, folder)


class ModuleWeights:
    """A pretraining recipe's weights in a checkpoint: the state dict of each named module (parameters and
    buffers, frozen ones too), one safetensors file each; tensors only, so loading runs no code."""

    def __init__(self, **modules: nn.Module):
        self.modules = modules

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, module in self.modules.items():
            safetensors.torch.save_model(module, str(folder / f"{name}.safetensors"), force_contiguous=True)

    def load(self, folder: Path) -> None:
        for name, module in self.modules.items():
            missing, unexpected = safetensors.torch.load_model(module, str(folder / f"{name}.safetensors"), strict=False)
            if missing or unexpected:
                raise ConfigError(f"{folder / name}.safetensors does not fit this run's {name}: missing "
                                  f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")


class Checkpoints:
    """Atomic checkpoints ``<folder>/step-NNNNNNNN/``, the newest ``keep_last`` kept.

    ``weights`` writes and reads what trains (model/); ``config``, the run's, is saved beside it (run.yaml), and
    ``check(saved config, folder)`` may refuse to resume from a checkpoint of a run set up otherwise. The rest
    of a step's state (optimizer, schedule, data position, ...) is the loop's, handed to ``save`` as tensors
    and plain values (training.pt, loaded with weights_only), and every process's RNG states (rng-<rank>.pt).
    """

    def __init__(
        self, folder: str | Path, accelerator: Accelerator, keep_last: int, weights: TrainedParts | ModuleWeights,
        config: DictConfig, check: Callable[[DictConfig, Path], None] | None = None,
    ):
        self.folder, self.accelerator, self.keep_last = Path(folder), accelerator, keep_last
        self.weights, self.config, self.check = weights, config, check

    def latest(self) -> Path | None:
        done = sorted(self.folder.glob("step-*")) if self.folder.is_dir() else []
        return done[-1] if done else None

    def save(self, step: int, state: Mapping) -> Path:
        """Write the step's checkpoint from every process (each its own RNG state); returns its folder.

        model/ holds the step's own weights, which a resumed run continues from; a weight average, if any,
        is part of ``state``.
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
            self.weights.save(staging / MODEL_DIR)
            torch.save({"step": step, "num_processes": accelerator.num_processes, **state}, staging / STATE_FILE)
            OmegaConf.save(self.config, staging / RUN_CONFIG, resolve=True)
            replace_dir(staging, final)
            for old in sorted(self.folder.glob("step-*"))[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def restore(self, folder: Path) -> dict:
        """Check the checkpoint fits this run, load its weights and this process's RNG states; returns the rest
        of its state for the loop to load (which draws nothing before the next step)."""
        state = torch.load(folder / STATE_FILE, weights_only=True)
        if state["num_processes"] != self.accelerator.num_processes:
            raise ConfigError(
                f"{folder} was written by {state['num_processes']} processes; resume with the same number "
                f"(this run has {self.accelerator.num_processes})"
            )
        if self.check is not None:
            self.check(OmegaConf.load(folder / RUN_CONFIG), folder)
        self.weights.load(folder / MODEL_DIR)
        set_rng_state(torch.load(folder / f"rng-{self.accelerator.process_index}.pt", weights_only=True))
        log.info("resumed from %s at step %d", folder, state["step"])
        return state


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
