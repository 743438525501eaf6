"""A training run: its Accelerator, seeds and tracker; bad-sample counting; per-step progress and logging.

A run's output folder (checkpoints/ and final/ are nextmm.training.checkpoints'):

    <output_dir>/checkpoints/step-00000500/   model/ (trained parts: projectors + adapter, safetensors),
                                              training.pt (optimizer, schedule, data position, step,
                                              bad-sample counts), rng-<rank>.pt, run.yaml (resolved config)
    <output_dir>/final/                       the trained parts at the last step (with ema.decay set: their
                                              average, its state in training.pt): model=<output_dir>/final
    <output_dir>/<stage>/                     tensorboard events, with logging.tracker=tensorboard
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from nextmm.data.dataset import Batch, Skipped
from nextmm.errors import ConfigError, UserError
from nextmm.modality import MODALITIES
from nextmm.training.checkpoints import CHECKPOINTS

log = logging.getLogger(__name__)

TERMS = ("loss", "nll", *(f"align/{m}" for m in MODALITIES), *(f"denoise/{m}" for m in MODALITIES))


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
