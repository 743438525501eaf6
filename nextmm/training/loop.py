"""The training loop the three stage recipes share; each recipe brings its data and its loss.

A stage is a numbered sequence of plain steps: the run, the model and what trains; the recipe's data
and loss; optimizer, schedule and weight average; resume; the loop; the trained parts (or their average,
``ema``) for the next stage. The recipes (nextmm.recipes) call ``train_stage`` with their data and loss.
"""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from nextmm.data import BatchStream
from nextmm.model import NextMM
from nextmm.training.checkpoints import Checkpoints, init_from, save_final
from nextmm.training.optimization import build_average, build_optimizer, build_scheduler
from nextmm.training.run import BadSamples, Progress, log_trainable, start_run
from nextmm.training.trainable import set_trainable


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

    # 3. loss, optimizer, schedule, and the weight average final/ gets (config `ema:`)
    loss_fn = accelerator.prepare(loss)
    optimizer = accelerator.prepare(build_optimizer(loss_fn, cfg.optimizer))
    scheduler = build_scheduler(optimizer, cfg.optimizer, cfg.train.max_steps)
    trained = [p for p in loss_fn.parameters() if p.requires_grad]
    average = build_average(trained, cfg.ema, cfg.train.max_steps)  # None unless ema.decay is set

    # 4. resume, or start at step 0
    bad = BadSamples(cfg.data.max_bad_share, cfg.data.bad_check_after)
    checkpoints = Checkpoints(cfg.output_dir, accelerator, cfg.checkpoint.keep_last)
    step, position = 0, None
    if cfg.resume and checkpoints.latest():
        step, position = checkpoints.restore(checkpoints.latest(), model, optimizer, scheduler, bad, cfg, average)
    batches = BatchStream(
        dataset, batch_size=cfg.train.batch_size, num_workers=cfg.data.num_workers, seed=cfg.seed,
        rank=accelerator.process_index, world=accelerator.num_processes, position=position,
    )

    # 5. train
    progress = Progress(
        accelerator, bad, name=stage, start_step=step, max_steps=cfg.train.max_steps, every=cfg.logging.every
    )
    history = []  # each step's metrics
    model.train()
    while step < cfg.train.max_steps:
        for _ in range(cfg.train.gradient_accumulation_steps):
            batch = next(batches)
            with accelerator.accumulate(loss_fn):
                terms = loss_fn(batch)
                accelerator.backward(terms["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(loss_fn.parameters(), cfg.optimizer.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            progress.add(terms, batch)
        if average is not None:
            average.step(trained)
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        step += 1
        history.append(progress.end_step(step, lr))
        if step % cfg.checkpoint.every == 0 or step == cfg.train.max_steps:
            checkpoints.save(step, model, optimizer, scheduler, batches.position, bad, cfg, average)

    # 6. the trained parts, for the next stage or for generation
    progress.close()
    bad.report()
    if average is not None:
        average.copy_to(trained)
    final = save_final(model, cfg.output_dir, accelerator)
    accelerator.end_training()
    losses = [metrics["loss"] for metrics in history]
    return {"losses": losses, "history": history, "final": final, "bad": bad.bad, "seen": bad.seen}


