"""A training run: its Accelerator, seeds and tracker; bad-sample counting; per-step progress and logging.

Every recipe starts its run here, the stages and the toyworld pretraining alike. A stage's output folder
(checkpoints/ and final/ are nextmm.training.checkpoints'; a pretraining recipe's checkpoints/ hold its
modules' state instead of model/, and its outputs are its own):

    <output_dir>/checkpoints/step-00000500/   model/ (trained parts: projectors + adapter, safetensors),
                                              training.pt (optimizer, schedule, data position, step,
                                              bad-sample counts, losses so far), rng-<rank>.pt, run.yaml
                                              (resolved config)
    <output_dir>/final/                       the trained parts at the last step (with ema.decay set: their
                                              average, its state in training.pt): model=<output_dir>/final
    <output_dir>/<stage>/                     tensorboard events, with logging.tracker=tensorboard
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from nextmm.checks import check, flag, number, whole
from nextmm.config import resolve_path
from nextmm.data.dataset import Batch, Skipped, check_sources
from nextmm.errors import ConfigError, UserError
from nextmm.modality import MODALITIES
from nextmm.training.checkpoints import CHECKPOINTS
from nextmm.training.sharded import check_resumable, configure_engine

log = logging.getLogger(__name__)

TERMS = ("loss", "nll", *(f"align/{m}" for m in MODALITIES), *(f"denoise/{m}" for m in MODALITIES))


def start_run(cfg: DictConfig, name: str) -> Accelerator:
    """Check the run config, make the Accelerator, seed every RNG (per process), quiet non-main processes,
    start the tracker (``logging.tracker``) under <output_dir>/<name>.

    ``train.gradient_accumulation_steps``, ``train.mixed_precision``, ``logging.tracker`` and ``device`` (cpu or
    auto) are read where the recipe's config has them; without them a run takes one batch a step, in float32,
    with no tracker, on CUDA when there is one. The engine (DDP, FSDP, DeepSpeed) is the accelerate config's
    that the run was launched with (nextmm.training.sharded).
    """
    if OmegaConf.is_missing(cfg, "output_dir") or not cfg.output_dir:
        raise ConfigError("set output_dir=<folder> (checkpoints and the final trained parts go there)")
    check_run_settings(cfg)
    checkpoints = Path(cfg.output_dir) / CHECKPOINTS
    found = checkpoints.is_dir() and any(checkpoints.rglob("step-*"))  # a phase's are nested
    if not cfg.resume and found:
        raise ConfigError(
            f"{cfg.output_dir} already holds checkpoints: pass resume=true to continue that run, "
            "or choose another output_dir"
        )
    if cfg.resume and not found:
        log.warning("resume=true, but %s holds no checkpoint: starting at step 0", checkpoints)
    tracker = OmegaConf.select(cfg, "logging.tracker", default=None)
    accelerator = Accelerator(
        # cpu on a machine without an accelerator too, so that a multi-process launch on CPUs runs DDP over gloo
        cpu=OmegaConf.select(cfg, "device", default="auto") == "cpu" or not torch.accelerator.is_available(),
        gradient_accumulation_steps=OmegaConf.select(cfg, "train.gradient_accumulation_steps", default=1),
        mixed_precision=OmegaConf.select(cfg, "train.mixed_precision", default="no"),
        log_with=tracker,
        project_dir=cfg.output_dir,
        # a batch need not hold every modality, so some projectors get no gradient in some steps
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if cfg.resume and found:  # a checkpoint of other processes or another engine, refused before any work
        check_resumable(checkpoints, accelerator)
    configure_engine(accelerator, cfg)
    if not accelerator.is_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    set_seed(cfg.seed + accelerator.process_index)
    if tracker:
        accelerator.init_trackers(name, config=tracker_config(cfg))
    log.info("%d process(es) on %s (%s)", accelerator.num_processes, accelerator.device, accelerator.distributed_type)
    return accelerator


def check_run_settings(cfg: DictConfig) -> None:
    """The settings every recipe shares, each in range before anything is built (those its config has)."""
    rules = {
        "seed": (whole(0), "a whole number >= 0"),
        "resume": (flag, "true or false"),
        "train.max_steps": (whole(1), "a whole number of steps >= 1"),
        "train.batch_size": (whole(1), "a whole number of samples >= 1"),
        "train.gradient_accumulation_steps": (whole(1), "a whole number >= 1"),
        "optimizer.lr": (lambda v: number(v) and v > 0, "a learning rate above 0"),
        "optimizer.weight_decay": (lambda v: number(v) and v >= 0, "0 or more"),
        "optimizer.max_grad_norm": (lambda v: number(v) and v > 0, "a norm above 0"),
        "optimizer.warmup_steps": (whole(0), "a whole number of steps >= 0"),
        "data.num_workers": (whole(0), "a whole number of worker processes >= 0"),
        "checkpoint.every": (whole(1), "a whole number of steps >= 1"),
        "checkpoint.keep_last": (whole(1), "a whole number >= 1"),
        "logging.every": (whole(1), "a whole number of steps >= 1"),
        "train.mixed_precision": (lambda v: v in ("no", "fp16", "bf16"), "no, fp16 or bf16"),
        "optimizer.schedule": (lambda v: v in ("cosine", "constant"), "cosine or constant"),
        "optimizer.fused": (lambda v: v == "auto" or isinstance(v, bool), "auto, true or false"),
        "optimizer.total_steps": (whole(1), "a whole number of steps >= 1, or null for train.max_steps"),
        "data.max_bad_share": (lambda v: number(v) and 0 <= v <= 1, "a share from 0 to 1"),
        "data.bad_check_after": (whole(0), "a whole number of samples >= 0"),
    }
    check({key: OmegaConf.select(cfg, key, default=None) for key in rules}, rules)
    for key in ("init_from", "features", "targets"):  # folders a run reads, there before anything is built
        folder = OmegaConf.select(cfg, key, default=None)
        if folder is not None and not resolve_path(folder).is_dir():
            raise ConfigError(f"{key}={folder}: no such folder; give one written by nextmm, or null")
    if OmegaConf.select(cfg, "data.sources", default=None) is not None:
        check_sources(cfg.data)


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


class BatchSize(NamedTuple):
    """What one micro-batch held: samples, LLM tokens (None where a recipe's batches do not count them) and
    the samples skipped as bad."""

    samples: int
    tokens: int | None = None
    skipped: Sequence[Skipped] = ()


def stage_batch_size(batch: Batch) -> BatchSize:
    return BatchSize(len(batch), batch.num_tokens, batch.skipped)


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


class Progress:
    """Per-step metrics: summed locally over micro-batches, reduced over processes at the end of the step.

    Shows each loss term (of ``terms``: every process must know the same names), the learning rate, samples/s
    and, where batches count tokens, tokens/s on a tqdm bar (main process), logs a line every ``every`` steps and
    sends the same numbers to accelerate's trackers when one is set. ``bad`` counts skipped samples, where a
    recipe's data can have them.
    """

    def __init__(
        self, accelerator: Accelerator, *, name: str, terms: Sequence[str], start_step: int, max_steps: int,
        every: int, bad: BadSamples | None = None,
    ):
        self.accelerator, self.bad, self.every, self.max_steps = accelerator, bad, every, max_steps
        self.name, self.terms = name, list(terms)
        self.bar = tqdm(
            total=max_steps, initial=start_step, desc=name, disable=not accelerator.is_main_process, dynamic_ncols=True
        )
        self._reset()

    def _reset(self) -> None:
        self.sums = torch.zeros(len(self.terms), dtype=torch.float64)
        self.counts = torch.zeros(len(self.terms), dtype=torch.float64)
        self.samples = self.tokens = self.skipped = 0
        self.counts_tokens = False
        self.started = time.perf_counter()

    def add(self, terms: Mapping[str, torch.Tensor], size: BatchSize) -> None:
        """One micro-batch's loss terms and size (a batch of bad samples only has no loss to show)."""
        for name, value in terms.items() if size.samples else ():
            if name not in self.terms:
                raise ValueError(f"loss term {name!r} is none of the terms shown: {self.terms}")
            self.sums[self.terms.index(name)] += float(value.detach())
            self.counts[self.terms.index(name)] += 1
        self.samples += size.samples
        self.tokens += size.tokens or 0
        self.counts_tokens = size.tokens is not None
        self.skipped += len(size.skipped)
        if self.bad is not None:
            self.bad.warn(size.skipped)

    def end_step(self, step: int, lr: float) -> dict[str, float]:
        """Reduce over processes, count bad samples (may raise), show and log; returns the step's metrics.

        A loss that is no longer a finite number stops the run: every later step would only spoil the weights.
        """
        sizes = torch.tensor([self.samples, self.tokens, self.skipped], dtype=torch.float64)
        total = self.accelerator.reduce(torch.cat([self.sums, self.counts, sizes]).to(self.accelerator.device), "sum")
        sums, counts, sizes = total.cpu().split([len(self.terms), len(self.terms), 3])
        samples, tokens, skipped = sizes.tolist()
        seconds = max(time.perf_counter() - self.started, 1e-9)
        metrics = {name: float(sums[i] / counts[i]) for i, name in enumerate(self.terms) if counts[i] > 0}
        if "loss" in metrics and not math.isfinite(metrics["loss"]):
            self.bar.close()
            raise RuntimeError(f"{self.name}: the loss is {metrics['loss']} at step {step}; lower the learning rate")
        metrics.setdefault("loss", float("nan"))  # every sample of the step was bad
        metrics.update({"lr": lr, "samples_per_s": samples / seconds})
        if self.counts_tokens:
            metrics["tokens_per_s"] = tokens / seconds
        if self.bad is not None:
            try:
                self.bad.update(int(skipped), int(samples + skipped))
            except UserError:
                self.bar.close()  # the error line then stands alone under the bar
                raise
            metrics["bad_samples"] = self.bad.bad

        self.bar.update(1)
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items() if k != "bad_samples"}, refresh=False)
        if step % self.every == 0 or step == self.max_steps:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            log.info("%s step %d/%d %s", self.name, step, self.max_steps, shown)
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
