"""The one training loop every recipe runs on: the three NExT-GPT stages and the toyworld pretraining.

``train_loop`` knows nothing of NextMM. A recipe hands it what differs: the loss as a module of what trains
(``forward(batch)`` returns {"loss": (), <term>: (), ...}), a batch source whose position a checkpoint can hold,
how to build the optimizer, the schedule, the number of steps and where checkpoints go. The loop brings the
rest: accelerate (prepare, backward, gradient clipping, accumulation), the learning-rate schedule, the weight
average (``ema``), periodic atomic checkpoints, exact resume from the newest one, and progress and logging.

A NExT-GPT stage is one use of it (nextmm.training.stage.train_stage); the pretraining recipes
(nextmm.toyworld.pretrain_*) call ``train_loop`` themselves, pretrain_decoders once per phase.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from nextmm.training.checkpoints import Checkpoints
from nextmm.training.optimization import build_average, build_scheduler
from nextmm.training.run import BadSamples, BatchSize, Progress


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
    newest checkpoint, with ``resume``); returns the per-step losses and metrics of this invocation, the
    losses of every step of the run ("run_losses", those before a resume included) and the module accelerate
    prepared ("prepared", which a sharded engine's final weights are gathered from).

    ``optimizer_for(loss)`` builds the optimizer; ``schedule`` holds ``warmup_steps``, ``schedule``,
    ``total_steps`` and ``max_grad_norm``. Each step takes ``Accelerator.gradient_accumulation_steps``
    batches. With ``ema`` ({"decay", "start"}, decay not null) the trained weights end as their running
    average. ``state`` names more objects with state_dict/load_state_dict that checkpoints hold (a phase's
    discriminators). A checkpoint at ``max_steps`` means the run is done: it is loaded and no step runs.
    """
    # 1. the loss and optimizer, prepared together (DDP when there are several processes; FSDP and DeepSpeed
    # rebuild the optimizer over their own parameters), the schedule and the weight average
    loss_fn, optimizer = accelerator.prepare(loss, optimizer_for(loss))
    scheduler = build_scheduler(optimizer, schedule, max_steps)
    trained = [p for p in loss_fn.parameters() if p.requires_grad]
    average = build_average(trained, ema, max_steps) if ema is not None else None  # None unless ema.decay is set
    # a sharded engine's checkpoint holds the optimizer apart, each process its shard (Checkpoints.sharded)
    optimizer_state = {} if checkpoints.sharded else {"optimizer": optimizer}
    stateful = {"position": batches, **optimizer_state, "scheduler": scheduler, **(state or {})}
    if bad is not None:
        stateful["bad"] = bad
    if average is not None:
        stateful["average"] = average

    # 2. resume, or start at step 0
    step, run_losses = 0, []
    if resume and checkpoints.latest():
        saved = checkpoints.restore(checkpoints.latest(), loss_fn)
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
            checkpoints.save(step, {**saved, "losses": run_losses}, loss_fn)
    progress.close()

    # 4. the trained weights, or their average
    if average is not None:
        average.copy_to(trained)
    losses = [metrics["loss"] for metrics in history]
    return {"losses": losses, "history": history, "run_losses": run_losses, "prepared": loss_fn}
