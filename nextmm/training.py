"""What the stage recipes share: run setup, optimizer and schedule, checkpoints, bad samples, progress.

There is no training loop here; each recipe in stages/ has its own, short enough to read in one go.

A run's output folder:

    <output_dir>/checkpoints/step-00000500/   model/ (trained parts: projectors + adapter, safetensors),
                                              training.pt (optimizer, schedule, data position, step,
                                              bad-sample counts), rng-<rank>.pt, run.yaml (resolved config)
    <output_dir>/final/                       the trained parts at the last step (with ema.decay set: their
                                              average, its state in training.pt): model=<output_dir>/final
    <output_dir>/<stage>/                     tensorboard events, with logging.tracker=tensorboard

Every folder appears whole or not at all (written aside, then renamed).
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from diffusers.training_utils import EMAModel
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from nextmm.atomic import replace_dir
from nextmm.checkpoint import load_trained_parts, save_trained_parts
from nextmm.config import resolve_path
from nextmm.data.dataset import Batch, Skipped
from nextmm.errors import ConfigError, UserError
from nextmm.modality import MODALITIES

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
FINAL = "final"
MODEL_DIR = "model"
STATE_FILE = "training.pt"
RUN_CONFIG = "run.yaml"
TERMS = ("loss", "nll", *(f"align/{m}" for m in MODALITIES), *(f"denoise/{m}" for m in MODALITIES))


# --------------------------------------------------------------------------------------------- setup
def start_run(cfg: DictConfig, name: str) -> Accelerator:
    """Check the run config, make the Accelerator, seed every RNG (per process), quiet non-main processes,
    start the tracker (``logging.tracker``) under <output_dir>/<name>."""
    if OmegaConf.is_missing(cfg, "output_dir") or not cfg.output_dir:
        raise ConfigError("set output_dir=<folder> (checkpoints and the final trained parts go there)")
    checkpoints = Path(cfg.output_dir) / CHECKPOINTS
    if not cfg.resume and checkpoints.is_dir() and any(checkpoints.glob("step-*")):
        raise ConfigError(
            f"{cfg.output_dir} already holds checkpoints: pass resume=true to continue that run, "
            "or choose another output_dir"
        )
    accelerator = Accelerator(
        cpu=not torch.accelerator.is_available(),  # so that a multi-process launch on CPUs runs DDP over gloo
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        mixed_precision=cfg.train.mixed_precision,
        log_with=cfg.logging.tracker,
        project_dir=cfg.output_dir,
        # a batch need not hold every modality, so some projectors get no gradient in some steps
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    set_seed(cfg.seed + accelerator.process_index)
    if cfg.logging.tracker:
        accelerator.init_trackers(name, config=tracker_config(cfg))
    log.info("%d process(es) on %s (%s)", accelerator.num_processes, accelerator.device, accelerator.distributed_type)
    return accelerator


def init_from(model: nn.Module, path: str | None) -> None:
    """Start from a previous stage's trained parts (its final/ or a checkpoint), names and shapes checked strictly."""
    if not path:
        return
    folder = resolve_path(path)
    if (folder / MODEL_DIR).is_dir():  # a checkpoint folder
        folder = folder / MODEL_DIR
    load_trained_parts(model, folder)
    log.info("initialised the trained parts from %s", folder)


def log_trainable(model: nn.Module, counts: Mapping[str, int]) -> None:
    """The trainable parameter count of each part (output projectors per modality) and the share of all."""
    total = sum(p.numel() for p in model.parameters())
    trained = sum(counts.values())
    log.info("trainable parameters: %s of %s (%.3f%%)", f"{trained:,}", f"{total:,}", 100 * trained / total)
    for part, count in counts.items():
        log.info("  %-18s %s", part, f"{count:,}")
        if part == "output_projectors":
            for modality, projector in model.output_projectors.items():
                log.info("    %-16s %s", modality, f"{sum(p.numel() for p in projector.parameters()):,}")


def build_optimizer(module: nn.Module, cfg: Mapping) -> torch.optim.Optimizer:
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"])


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


# ---------------------------------------------------------------------------------- weight average
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


# ------------------------------------------------------------------------------------- bad samples
def optimizer_step(loss: torch.Tensor, params: Iterable[nn.Parameter], optimizer: torch.optim.Optimizer,
                   scheduler: LambdaLR, max_grad_norm: float) -> float:
    """One plain (single-process) step: backward, clip, step, schedule. Returns the loss as a float."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


class BadSamples:
    """Counts skipped samples over all processes; raises once their share passes ``max_share``.

    The share is judged only after ``check_after`` samples, so one bad file early on cannot stop a run.
    """

    def __init__(self, max_share: float, check_after: int):
        self.max_share, self.check_after = max_share, check_after
        self.bad = self.seen = 0
        self.first: list[str] = []

    def warn(self, skipped: list[Skipped]) -> None:
        """Warn about this process's skipped samples (counting happens in ``update``, over all processes)."""
        for item in skipped:
            log.warning("skipped bad sample %s: %s", item.origin, item.reason)
            if len(self.first) < 3:
                self.first.append(f"{item.origin}: {item.reason}")

    def update(self, bad: int, seen: int) -> None:
        self.bad += bad
        self.seen += seen
        if self.seen >= self.check_after and self.bad > self.max_share * self.seen:
            first = f" (first: {self.first[0]})" if self.first else ""
            raise UserError(
                f"{self.bad} of {self.seen} samples were bad ({self.share:.1%}), more than data.max_bad_share="
                f"{self.max_share:g}{first}; fix the data or raise data.max_bad_share"
            )

    @property
    def share(self) -> float:
        return self.bad / self.seen if self.seen else 0.0

    def report(self) -> None:
        if self.bad:
            share = 100 * self.share
            log.warning("skipped %d of %d samples (%.2f%%) as bad; see the warnings above", self.bad, self.seen, share)
        else:
            log.info("no bad samples among %d", self.seen)

    def state_dict(self) -> dict:
        return {"bad": self.bad, "seen": self.seen}

    def load_state_dict(self, state: Mapping) -> None:
        self.bad, self.seen = int(state["bad"]), int(state["seen"])


# ----------------------------------------------------------------------------------------- progress
class Progress:
    """Per-step metrics: summed locally over micro-batches, reduced over processes at the end of the step.

    Shows each loss term, the learning rate, samples/s and tokens/s on a tqdm bar (main process), logs a
    line every ``every`` steps and sends the same numbers to accelerate's trackers when one is set.
    """

    def __init__(
        self, accelerator: Accelerator, bad: BadSamples, *, name: str, start_step: int, max_steps: int, every: int
    ):
        self.accelerator, self.bad, self.every, self.max_steps = accelerator, bad, every, max_steps
        self.bar = tqdm(
            total=max_steps, initial=start_step, desc=name, disable=not accelerator.is_main_process, dynamic_ncols=True
        )
        self._reset()

    def _reset(self) -> None:
        self.sums = torch.zeros(len(TERMS), dtype=torch.float64)
        self.counts = torch.zeros(len(TERMS), dtype=torch.float64)
        self.samples = self.tokens = self.skipped = 0
        self.started = time.perf_counter()

    def add(self, terms: Mapping[str, torch.Tensor], batch: Batch) -> None:
        """One micro-batch's loss terms and sizes (a batch of bad samples only has no loss to show)."""
        for name, value in terms.items() if len(batch) else ():
            self.sums[TERMS.index(name)] += float(value.detach())
            self.counts[TERMS.index(name)] += 1
        self.samples += len(batch)
        self.tokens += batch.num_tokens
        self.skipped += len(batch.skipped)
        self.bad.warn(batch.skipped)

    def end_step(self, step: int, lr: float) -> dict[str, float]:
        """Reduce over processes, count bad samples (may raise), show and log; returns the step's metrics."""
        sizes = torch.tensor([self.samples, self.tokens, self.skipped], dtype=torch.float64)
        total = self.accelerator.reduce(torch.cat([self.sums, self.counts, sizes]).to(self.accelerator.device), "sum")
        sums, counts, sizes = total.cpu().split([len(TERMS), len(TERMS), 3])
        samples, tokens, skipped = sizes.tolist()
        seconds = max(time.perf_counter() - self.started, 1e-9)
        metrics = {name: float(sums[i] / counts[i]) for i, name in enumerate(TERMS) if counts[i] > 0}
        metrics.setdefault("loss", float("nan"))  # every sample of the step was bad
        metrics.update({"lr": lr, "samples_per_s": samples / seconds, "tokens_per_s": tokens / seconds})
        try:
            self.bad.update(int(skipped), int(samples + skipped))
        except UserError:
            self.bar.close()  # the error line then stands alone under the bar
            raise
        metrics["bad_samples"] = self.bad.bad

        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "bad_samples"}, refresh=False)
        if step % self.every == 0 or step == self.max_steps:
            log.info("step %d/%d %s", step, self.max_steps, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            self.accelerator.log(metrics, step=step)
        self._reset()
        return metrics

    def close(self) -> None:
        self.bar.close()


def tracker_config(cfg: DictConfig) -> dict:
    """The run config flattened to scalars, as tensorboard's hparams want it."""
    flat = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, f"{name}/")
            else:
                flat[name] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


# -------------------------------------------------------------------------------------- checkpoints
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
