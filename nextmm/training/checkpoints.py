"""Checkpoints of a run (exact resume) and its final trained parts; every folder appears whole or not at all.

Under a sharded engine (FSDP, DeepSpeed) the model and optimizer state go through accelerate, each process its
shard (nextmm.training.sharded); otherwise the main process writes them.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from omegaconf import DictConfig, OmegaConf
from torch import nn

from nextmm.atomic import replace_dir
from nextmm.config import resolve_path
from nextmm.errors import ConfigError
from nextmm.training.sharded import (
    ENGINE_DIR,
    ENGINE_FILE,
    check_engine,
    engine_record,
    gathered_state,
    is_sharded,
)
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

    def save(self, folder: Path, state: Mapping[str, torch.Tensor] | None = None) -> None:
        """``state``: the model's gathered state dict, where the model itself holds shards (FSDP)."""
        save_trained_parts(self.model, folder, state)

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
    engine.json records the engine and the number of processes, which a resumed run must match.

    Under a sharded engine (``sharded``), accelerate's save_state writes the prepared module and optimizer to
    engine/, each process its shard, and load_state reads them back: the loop then leaves the optimizer out of
    its state, and model/ holds the trained parts gathered from the shards (for init_from), not read on resume.
    """

    def __init__(
        self, folder: str | Path, accelerator: Accelerator, keep_last: int, weights: TrainedParts | ModuleWeights,
        config: DictConfig, check: Callable[[DictConfig, Path], None] | None = None,
    ):
        self.folder, self.accelerator, self.keep_last = Path(folder), accelerator, keep_last
        self.weights, self.config, self.check = weights, config, check
        self.sharded = is_sharded(accelerator)
        if self.sharded and not isinstance(weights, TrainedParts):
            raise ConfigError(f"{accelerator.distributed_type.value}: only the NExT-GPT stages run under a sharded "
                              "engine; launch this recipe without an FSDP or DeepSpeed accelerate config (DDP)")

    def latest(self) -> Path | None:
        done = sorted(self.folder.glob("step-*")) if self.folder.is_dir() else []
        return done[-1] if done else None

    def save(self, step: int, state: Mapping, prepared: nn.Module | None = None) -> Path:
        """Write the step's checkpoint from every process (each its own RNG state); returns its folder.

        model/ holds the step's own weights, which a resumed run continues from; a weight average, if any,
        is part of ``state``. ``prepared``: the module accelerate prepared, whose shards a sharded engine saves.
        """
        accelerator = self.accelerator
        final = self.folder / f"step-{step:08d}"
        staging = self.folder / f".step-{step:08d}.partial"
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        accelerator.wait_for_everyone()
        torch.save(rng_state(), staging / f"rng-{accelerator.process_index}.pt")
        gathered = None
        if self.sharded:  # every process: its shard of the model and optimizer, then the trained parts gathered
            accelerator.save_state(staging / ENGINE_DIR, **engine_kwargs(accelerator, save=True))
            gathered = gathered_state(accelerator, prepared, self.weights.model)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if self.sharded:
                self.weights.save(staging / MODEL_DIR, gathered)
            else:
                self.weights.save(staging / MODEL_DIR)
            torch.save({"step": step, "num_processes": accelerator.num_processes, **state}, staging / STATE_FILE)
            (staging / ENGINE_FILE).write_text(json.dumps(engine_record(accelerator)))
            OmegaConf.save(self.config, staging / RUN_CONFIG, resolve=True)
            replace_dir(staging, final)
            for old in sorted(self.folder.glob("step-*"))[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def restore(self, folder: Path, prepared: nn.Module | None = None) -> dict:
        """Check the checkpoint fits this run, load its weights (a sharded engine: and the optimizer, into
        ``prepared`` and its optimizer) and this process's RNG states; returns the rest of its state for the
        loop to load (which draws nothing before the next step)."""
        state = torch.load(folder / STATE_FILE, weights_only=True)
        record = folder / ENGINE_FILE  # absent from checkpoints written before it existed, all by DDP or one process
        saved = json.loads(record.read_text()) if record.is_file() else {"distributed_type": None}
        check_engine({**saved, "num_processes": state["num_processes"]}, self.accelerator, folder)
        if self.check is not None:
            self.check(OmegaConf.load(folder / RUN_CONFIG), folder)
        if self.sharded:
            self.accelerator.load_state(folder / ENGINE_DIR, **engine_kwargs(self.accelerator, save=False))
        else:
            self.weights.load(folder / MODEL_DIR)
        set_rng_state(torch.load(folder / f"rng-{self.accelerator.process_index}.pt", weights_only=True))
        log.info("resumed from %s at step %d", folder, state["step"])
        return state


def save_final(model: nn.Module, output_dir: str | Path, accelerator: Accelerator,
               prepared: nn.Module | None = None) -> Path:
    """The trained parts of the finished run, loadable as a model: model=<output_dir>/final.

    Under a sharded engine they are gathered from ``prepared`` (the module accelerate prepared) first.
    """
    folder = Path(output_dir) / FINAL
    gathered = gathered_state(accelerator, prepared, model) if is_sharded(accelerator) else None
    if accelerator.is_main_process:
        save_trained_parts(model, folder, gathered)
        log.info("trained parts written to %s (use model=%s)", folder, folder)
    accelerator.wait_for_everyone()
    return folder


def engine_kwargs(accelerator: Accelerator, *, save: bool) -> dict:
    """DeepSpeed saves the module's trainable tensors only (the frozen LLM, encoder and embeddings come from
    their own files again), so it loads the module non-strictly; FSDP takes no options."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return {}
    return {"exclude_frozen_parameters": True} if save else {"load_module_strict": False}


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
