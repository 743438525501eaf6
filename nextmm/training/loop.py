"""The one training loop every recipe runs on: the three NExT-GPT stages and the toyworld pretraining.

``train_loop`` knows nothing of NextMM. A recipe hands it what differs: the loss as a module of what trains
(``forward(batch)`` returns {"loss": (), <term>: (), ...}), a batch source whose position a checkpoint can hold,
how to build the optimizer, the schedule, the number of steps and where checkpoints go. The loop brings the
rest: accelerate (prepare, backward, gradient clipping, accumulation), the learning-rate schedule, the weight
average (``ema``), periodic atomic checkpoints, exact resume from the newest one, and progress and logging.

``train_stage`` is a stage on that loop: the run, the model and what trains; the recipe's data and loss;
resume; the loop; the trained parts (or their average) for the next stage. The stage recipes
(nextmm.recipes) call it with their data and loss; the pretraining recipes (nextmm.toyworld.pretrain_*) call
``train_loop`` themselves, pretrain_decoders once per phase.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from nextmm.data import BatchStream
from nextmm.errors import ConfigError
from nextmm.model import NextMM
from nextmm.training.checkpoints import CHECKPOINTS, Checkpoints, TrainedParts, init_from, save_final
from nextmm.training.optimization import build_average, build_optimizer, build_scheduler
from nextmm.training.run import (
    TERMS,
    BadSamples,
    BatchSize,
    Progress,
    log_trainable,
    stage_batch_size,
    start_run,
)
from nextmm.training.trainable import set_trainable


class Batches(Protocol):
    """An endless batch source whose position a checkpoint holds."""

    def __next__(self) -> Any: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: Mapping) -> None: ...


class RandomBatches:
    """Batches that ``draw()`` makes from random streams of their own (a torch and optionally a numpy generator,
    which ``draw`` uses); their states are the position."""

    def __init__(self, draw: Callable[[], Any], generator: torch.Generator, rng: np.random.Generator | None = None):
        self.draw, self.generator, self.rng = draw, generator, rng

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        return self.draw()

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state()}
        if self.rng is not None:
            state["rng"] = self.rng.bit_generator.state
        return state

    def load_state_dict(self, state: Mapping) -> None:
        self.generator.set_state(state["generator"])
        if self.rng is not None:
            self.rng.bit_generator.state = state["rng"]


class ModuleLoss(nn.Module):
    """A loss function of a batch as a module over the modules it trains: registered here, accelerate prepares
    them, the optimizer finds their trainable parameters and checkpoints their state."""

    def __init__(self, terms: Callable[[Any], dict[str, torch.Tensor]], **modules: nn.Module):
        super().__init__()
        self.terms = terms
        self.trained = nn.ModuleDict(modules)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return self.terms(batch)


def train_loop(
    accelerator: Accelerator,
    *,
    name: str,
    loss: nn.Module,
    batches: Batches,
    optimizer_for: Callable[[nn.Module], torch.optim.Optimizer],
    schedule: Mapping,
    max_steps: int,
    checkpoints: Checkpoints,
    checkpoint_every: int,
    resume: bool,
    terms: Sequence[str],
    batch_size: Callable[[Any], BatchSize],
    log_every: int,
    ema: Mapping | None = None,
    bad: BadSamples | None = None,
    state: Mapping[str, Any] | None = None,
) -> dict:
    """Train ``loss``'s trainable parameters for ``max_steps`` optimizer steps (or what remains of them after the
    newest checkpoint, with ``resume``); returns the per-step losses and metrics of this invocation and the
    losses of every step of the run ("run_losses", those before a resume included).

    ``optimizer_for(loss)`` builds the optimizer; ``schedule`` holds ``warmup_steps``, ``schedule``,
    ``total_steps`` and ``max_grad_norm``. Each step takes ``Accelerator.gradient_accumulation_steps``
    batches. With ``ema`` ({"decay", "start"}, decay not null) the trained weights end as their running
    average. ``state`` names more objects with state_dict/load_state_dict that checkpoints hold (a phase's
    discriminators). A checkpoint at ``max_steps`` means the run is done: it is loaded and no step runs.
    """
    # 1. the loss (prepared: DDP when there are several processes), optimizer, schedule and weight average
    loss_fn = accelerator.prepare(loss)
    optimizer = accelerator.prepare(optimizer_for(loss))
    scheduler = build_scheduler(optimizer, schedule, max_steps)
    trained = [p for p in loss_fn.parameters() if p.requires_grad]
    average = build_average(trained, ema, max_steps) if ema is not None else None  # None unless ema.decay is set
    stateful = {"position": batches, "optimizer": optimizer, "scheduler": scheduler, **(state or {})}
    if bad is not None:
        stateful["bad"] = bad
    if average is not None:
        stateful["average"] = average

    # 2. resume, or start at step 0
    step, run_losses = 0, []
    if resume and checkpoints.latest():
        saved = checkpoints.restore(checkpoints.latest())
        for key, thing in stateful.items():
            thing.load_state_dict(saved[key])
        if average is not None:
            average.to(device=accelerator.device)
        if "scaler" in saved and accelerator.scaler is not None:  # fp16 loss scaling
            accelerator.scaler.load_state_dict(saved["scaler"])
        step, run_losses = saved["step"], list(saved.get("losses", []))

    # 3. train
    progress = Progress(accelerator, name=name, terms=terms, start_step=step, max_steps=max_steps, every=log_every,
                        bad=bad)
    history = []  # each step's metrics
    loss_fn.train()
    while step < max_steps:
        for _ in range(accelerator.gradient_accumulation_steps):
            batch = next(batches)
            with accelerator.accumulate(loss_fn):
                values = loss_fn(batch)
                accelerator.backward(values["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(loss_fn.parameters(), schedule["max_grad_norm"])
                optimizer.step()
                optimizer.zero_grad()
            progress.add(values, batch_size(batch))
        if average is not None:
            average.step(trained)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        step += 1
        history.append(progress.end_step(step, lr))
        run_losses.append(history[-1]["loss"])
        if step % checkpoint_every == 0 or step == max_steps:
            saved = {key: thing.state_dict() for key, thing in stateful.items()}
            if accelerator.scaler is not None:
                saved["scaler"] = accelerator.scaler.state_dict()
            checkpoints.save(step, {**saved, "losses": run_losses})
    progress.close()

    # 4. the trained weights, or their average
    if average is not None:
        average.copy_to(trained)
    losses = [metrics["loss"] for metrics in history]
    return {"losses": losses, "history": history, "run_losses": run_losses}


def check_stage_resume(cfg: DictConfig) -> Callable[[DictConfig, Path], None]:
    """A stage resumes only a run that trained the same parts with the same weight average."""

    def check(saved: DictConfig, folder: Path) -> None:
        if list(saved.trainable) != list(cfg.trainable):
            raise ConfigError(f"{folder} trained {list(saved.trainable)}, this run trains {list(cfg.trainable)}")
        saved_ema = OmegaConf.to_container(saved.ema) if "ema" in saved else {"decay": None, "start": 0}
        if saved_ema != OmegaConf.to_container(cfg.ema):
            raise ConfigError(f"{folder} averaged the weights with ema={saved_ema}: resume with the same ema settings")

    return check


def train_stage(
    cfg: DictConfig,
    stage: str,
    *,
    dataset_for: Callable[[NextMM], Dataset],
    loss_for: Callable[[NextMM], nn.Module],
) -> dict:
    """Train one stage as ``cfg`` says; returns the per-step losses and metrics and the final folder."""
    # 1. run, model, and what trains (the stage config's `trainable:`)
    accelerator = start_run(cfg, stage)
    model = NextMM.from_config(cfg.model, device=accelerator.device)
    init_from(model, cfg.init_from)
    log_trainable(model, set_trainable(model, cfg.trainable))

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
    final = save_final(model, cfg.output_dir, accelerator)
    accelerator.end_training()
    return {"losses": result["losses"], "history": result["history"], "final": final, "bad": bad.bad,
            "seen": bad.seen}
