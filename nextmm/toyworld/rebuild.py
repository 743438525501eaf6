"""The toyworld model from scratch in one command: world, pretraining, the three NExT-GPT stages, export.

    python -m nextmm train toyworld output_dir=runs/toyworld                 # then: python -m nextmm eval model=toyworld

Every step runs the project's own recipe as its own process, with the command printed first, so any step can
be rerun by hand. A step whose output already exists is skipped, and a training step stopped part way continues
from its newest checkpoint (resume=true), so a stopped rebuild continues; fresh=true starts over. In output_dir:

    data/                      the world (python -m nextmm world)
    pretrain_encoder/          imagebind.pth, the tiny ImageBind trained by InfoNCE
    pretrain_llm/llm/          the tiny Llama and its BPE tokenizer (a transformers folder)
    pretrain_decoders/<m>/     the tiny SD, AudioLDM and Zeroscope pipelines (diffusers folders)
    features/<data>/           the frozen ImageBind's features of the stages' input media (python -m nextmm precompute)
    encoder_side/final  decoder_side/final  modality_switching/final   the three stages' trained parts
    timings.json               seconds per step

The export (default nextmm/toyworld/checkpoint/, which nextmm/conf/model/toyworld.yaml reads) holds the parts in the
formats real weights use: imagebind.pth, llm/, decoders/<m>/, trained/ (projectors, peft adapter, tokenizer).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from nextmm.atomic import staged_file, staged_folder
from nextmm.config import resolve_path
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES

STAGE = "toyworld"
log = logging.getLogger(STAGE)


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]  # after the interpreter
    done: Path  # exists once the step has finished


def model_overrides(run: Path) -> list[str]:
    """model=toyworld with the pretrained parts of this run instead of the shipped ones, and no trained parts."""
    overrides = [
        "model=toyworld",
        f"model.encoder.checkpoint={run / 'pretrain_encoder' / 'imagebind.pth'}",
        f"model.llm.path={run / 'pretrain_llm' / 'llm'}",
        f"model.llm.tokenizer={run / 'pretrain_llm' / 'llm'}",
        "model.trained=null",
    ]
    return overrides + [f"model.decoders.{m}.path={run / 'pretrain_decoders' / m}" for m in MODALITIES]


def as_overrides(settings: DictConfig, prefix: str = "") -> list[str]:
    """{train: {max_steps: 5}, tags: [a, b]} -> ["train.max_steps=5", "tags=[a,b]"], the leaves as Hydra overrides."""
    out = []
    for key, value in settings.items():
        if isinstance(value, DictConfig):
            out += as_overrides(value, f"{prefix}{key}.")
        elif isinstance(value, ListConfig):
            out.append(f"{prefix}{key}=[{','.join(str(v) for v in value)}]")
        else:
            out.append(f"{prefix}{key}={'null' if value is None else value}")
    return out


def plan(cfg: DictConfig) -> list[Step]:
    """The steps in order, each with its full command line."""
    run = Path(cfg.output_dir)
    data = run / "data"

    def recipe(name: str) -> list[str]:  # a step stopped part way continues from its newest checkpoint
        return ["-m", "nextmm", "train", name, "resume=true"]

    def extra(name: str) -> list[str]:
        return as_overrides(cfg[name])

    def stage(name: str, data_cfg: str, init: Path | str, with_features: bool = True) -> Step:
        paths = [f"data={data_cfg}", f"data.root={data}", f"output_dir={run / name}", f"init_from={init}",
                 f"seed={cfg.seed}"] + ([f"features={run / 'features' / data_cfg}"] if with_features else [])
        return Step(name, recipe(name) + model_overrides(run) + paths + extra(name), run / name / "final")

    def features(data_cfg: str) -> Step:
        """The encoder is frozen from here on: its features of a data set's media are computed once."""
        out = run / "features" / data_cfg
        return Step(f"features_{data_cfg.removeprefix('toyworld_')}", ["-m", "nextmm", "precompute", "kind=features",
                    f"data={data_cfg}", f"data.root={data}", f"output={out}", *model_overrides(run)],
                    out / "index.json")

    return [
        Step("world", ["-m", "nextmm", "world", f"output={data}", f"seed={cfg.seed}"] + extra("world"),
             data / "manifest.json"),
        Step("pretrain_encoder", recipe("pretrain_encoder") + [f"data_root={data}",
             f"output_dir={run / 'pretrain_encoder'}", f"seed={cfg.seed}"] + extra("pretrain_encoder"),
             run / "pretrain_encoder" / "imagebind.pth"),
        Step("pretrain_llm", recipe("pretrain_llm") + [f"data_root={data}", f"output_dir={run / 'pretrain_llm'}",
             f"seed={cfg.seed}"] + extra("pretrain_llm"), run / "pretrain_llm" / "llm"),
        Step("pretrain_decoders", recipe("pretrain_decoders") + [f"data_root={data}",
             f"output_dir={run / 'pretrain_decoders'}", f"seed={cfg.seed}"] + extra("pretrain_decoders"),
             run / "pretrain_decoders" / "metrics.json"),
        features("toyworld_pairs"),
        features("toyworld_instructions"),
        stage("encoder_side", "toyworld_pairs", "null"),
        stage("decoder_side", "toyworld_pairs", run / "encoder_side" / "final", with_features=False),  # no input media
        stage("modality_switching", "toyworld_instructions", run / "decoder_side" / "final"),
    ]


def run_step(step: Step) -> float:
    """Run one step's recipe as a child process; returns its wall time in seconds."""
    command = [sys.executable, *step.argv]
    log.info("step %s: %s", step.name, shlex.join(command))
    start = time.perf_counter()
    if subprocess.run(command, check=False).returncode != 0:
        raise ConfigError(f"step {step.name} failed (its error is above); fix it and rerun the same command to "
                          "continue from this step")
    return time.perf_counter() - start


def export(run: Path, target: Path, name: str) -> None:
    """Copy the finished parts into ``target`` (replacing it whole) and point the trained config at them.

    The config names them under ``name``, the export folder as the user gave it (``toyworld/checkpoint``, which
    a model config resolves inside the package, or a folder of theirs).
    """
    with staged_folder(target) as staging:
        # ImageBind's state dict in float16 (it loads into the float32 model as float32): 4.4 of the 40 MB
        state = torch.load(run / "pretrain_encoder" / "imagebind.pth", map_location="cpu", weights_only=True)
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, staging / "imagebind.pth")
        shutil.copytree(run / "pretrain_llm" / "llm", staging / "llm")
        for modality in MODALITIES:
            shutil.copytree(run / "pretrain_decoders" / modality, staging / "decoders" / modality)
        shutil.copytree(run / "modality_switching" / "final", staging / "trained")
        # The saved config names this run's folders; the export must name its own.
        config = OmegaConf.load(staging / "trained" / "config.yaml")
        config.encoder.checkpoint = f"{name}/imagebind.pth"
        config.llm.path = config.llm.tokenizer = f"{name}/llm"
        # and the size of this run's tokenizer, which the config only repeats (for counting without loading)
        llm_config = json.loads((staging / "llm" / "config.json").read_text())
        config.llm.architecture.vocab_size = llm_config["vocab_size"]
        for modality in MODALITIES:
            config.decoders[modality].path = f"{name}/decoders/{modality}"
        OmegaConf.save(config, staging / "trained" / "config.yaml")
        if (run / "timings.json").is_file():
            shutil.copy2(run / "timings.json", staging / "timings.json")
        for tokenizer in staging.rglob("tokenizer.json"):  # the same vocabulary in fewer bytes (no indentation)
            tokenizer.write_text(json.dumps(json.loads(tokenizer.read_text(encoding="utf-8")), ensure_ascii=False,
                                            separators=(",", ":")), encoding="utf-8")
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    log.info("exported the toyworld model to %s (%.1f MB)", target, size / 1e6)


def main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "output_dir"):
        raise ConfigError("set output_dir=<folder> for the run (e.g. output_dir=runs/toyworld)")
    run = Path(cfg.output_dir)
    if cfg.fresh and run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    timings_path = run / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    for step in plan(cfg):
        if step.done.exists():
            log.info("step %s: done already (%s exists)", step.name, step.done)
            continue
        timings[step.name] = round(run_step(step), 1)
        timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 1)
        with staged_file(timings_path) as path:
            path.write_text(json.dumps(timings, indent=1) + "\n", encoding="utf-8")
    log.info("steps took %s", ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))
    if cfg.export:
        export(run, resolve_path(cfg.export), str(cfg.export).rstrip("/"))
