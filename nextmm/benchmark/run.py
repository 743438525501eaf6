"""``nextmm benchmark task=<name> model=<model> data_root=<folder> [limit=N]``: one of the paper's tasks, measured.

A task is a pinned protocol (nextmm/conf/benchmark/<task>.yaml): the data set and its annotation file, the sample
count and the seed that draws them, the prompt that asks the model, sizes and diffusion steps, the metrics and their
settings, and the paper's published figures. A run is a numbered sequence of plain steps:

    1. read the task and the data set, draw the items (a missing folder or file fails here, in one line)
    2. build the metrics and the networks they look through (missing weights fail here, before the model)
    3. build the model
    4. ask: per item, a text -> X request with its modality forced, or an X -> text question about the medium
    5. score, and write the task's entry into ``output`` (one JSON of every task run) and the markdown table beside it
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from importlib import metadata, resources
from pathlib import Path

import hydra.utils
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from nextmm.benchmark.datasets import Item, load_items, pick
from nextmm.benchmark.features import frames_batch, image_batch, waveform_batch
from nextmm.benchmark.metrics import CAPTION_METRICS, NETWORK, GenerationScores, caption_scores, java_missing
from nextmm.errors import ConfigError, UserError
from nextmm.modality import MODALITIES

log = logging.getLogger(__name__)

TASK_FOLDER = "benchmark"  # in the nextmm.conf package
KINDS = ("text_to_x", "x_to_text")
PROTOCOL_KEYS = ("height", "width", "num_frames", "seconds", "num_inference_steps", "guidance_scale")
MEDIA_ARGUMENT = {"image": "images", "audio": "audios", "video": "videos"}  # model.chat's keyword per modality
LIBRARIES = ("nextmm", "torch", "transformers", "diffusers", "torchmetrics", "torch-fidelity", "pycocoevalcap",
             "panns-inference", "torchlibrosa", "librosa")


# ------------------------------------------------------------------------------------------------ the task
def task_names() -> list[str]:
    folder = resources.files("nextmm.conf") / TASK_FOLDER
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_task(name: str | None) -> DictConfig:
    """A task by name (nextmm/conf/benchmark/<name>.yaml) or by the path of a YAML file of the same keys."""
    if not name:
        raise ConfigError(f"give task=<name>: one of {', '.join(task_names())}")
    path = Path(str(name)).expanduser()
    if str(name).endswith((".yaml", ".yml")):
        source = path
    elif str(name) in task_names():
        source = resources.files("nextmm.conf") / TASK_FOLDER / f"{name}.yaml"
    else:
        raise ConfigError(f"unknown task {name!r}: choose one of {', '.join(task_names())}, or give a task YAML file")
    try:
        task = OmegaConf.create(source.read_text(encoding="utf-8"))
    except Exception as error:  # a missing file, or YAML that does not parse
        raise ConfigError(f"cannot read the task {source}: {str(error).splitlines()[0]}") from None
    required = {"table", "kind", "modality", "data", "samples", "seed", "prompt", "max_new_tokens", "metrics"}
    missing = sorted(required - set(task))
    if missing:
        raise ConfigError(f"the task {source} lacks {', '.join(missing)}")
    if task.kind not in KINDS or task.modality not in MODALITIES:
        raise ConfigError(f"the task {source}: kind must be one of {', '.join(KINDS)} and modality one of "
                          f"{', '.join(MODALITIES)}")
    known = CAPTION_METRICS if task.kind == "x_to_text" else tuple(NETWORK)
    unknown = [m for m in task.metrics if m not in known]
    if unknown:
        raise ConfigError(f"the task {source} names metrics {unknown}; a {task.kind} task measures {', '.join(known)}")
    return task


def pinned(task: DictConfig, changes: DictConfig) -> tuple[dict, list[str]]:
    """The protocol a run uses: the task's sizes and steps, with the run's non-null ``protocol.*`` in their place.
    Returns (values, the names changed)."""
    values = {key: task.get(key) for key in PROTOCOL_KEYS if task.get(key) is not None}
    changed = [key for key in PROTOCOL_KEYS if changes.get(key) is not None]
    foreign = [key for key in changed if key not in values]
    if foreign:
        raise ConfigError(f"protocol.{foreign[0]}: this task pins no {foreign[0]} (it pins {', '.join(values) or 'no sizes'})")
    values.update({key: changes[key] for key in changed})
    return values, changed


# ------------------------------------------------------------------------------------------------- asking
def generate(model, task: DictConfig, values: dict, item: Item, seed: int):
    """Item -> the rendered medium for its first caption (the modality forced, so every item yields one)."""
    turn = model.chat(task.prompt.format(caption=item.captions[0]), outputs=[task.modality], seed=seed,
                      max_new_tokens=task.max_new_tokens, temperature=0.0, progress=False,
                      num_inference_steps=values.get("num_inference_steps"),
                      guidance_scale=values.get("guidance_scale"), height=values.get("height"),
                      width=values.get("width"), num_frames=values.get("num_frames"),
                      audio_seconds=values.get("seconds"))
    return turn


def batches(modality: str, turn, item: Item, values: dict, networks: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(generated, real) as the feature networks take them: uint8 (N, 3, H, W) pictures or frames, or float
    (1, S) waveforms at the audio network's rate."""
    medium = turn.media(modality)[0]
    if modality == "image":
        height, width = values["height"], values["width"]
        return image_batch(medium, height, width), image_batch(item.media, height, width)
    if modality == "video":
        height, width, count = values["height"], values["width"], len(medium)
        return frames_batch(medium, height, width, count), frames_batch(item.media, height, width, count)
    rate = networks["audio"].sample_rate
    return (waveform_batch((medium, turn.sample_rate), rate, values["seconds"]),
            waveform_batch(item.media, rate, values["seconds"]))


def text_to_x(model, task: DictConfig, items: list[Item], values: dict, networks: dict, *, seed: int,
              device: torch.device, progress: bool) -> tuple[dict, dict]:
    """Each item's first caption rendered as the task's medium and scored against the item's own medium."""
    scores = GenerationScores(task.metrics, networks, device)
    signalled = 0
    for index, item in enumerate(tqdm(items, desc=task.modality, disable=not progress, leave=False)):
        turn = generate(model, task, values, item, seed + index)
        signalled += task.modality not in turn.forced
        generated, real = batches(task.modality, turn, item, values, networks)
        scores.update(generated, real, item.captions[0])
    # how often the LLM asked for the medium itself; otherwise generation appended its signal tokens
    return scores.compute(), {"llm_signalled": signalled / len(items)}


def x_to_text(model, task: DictConfig, items: list[Item], *, seed: int, progress: bool) -> tuple[dict, dict]:
    """Each item's medium with the task's question; the answers scored against the item's references."""
    answers = {}
    for index, item in enumerate(tqdm(items, desc=task.modality, disable=not progress, leave=False)):
        turn = model.chat(task.prompt, **{MEDIA_ARGUMENT[task.modality]: [item.media]}, seed=seed + index,
                          max_new_tokens=task.max_new_tokens, temperature=0.0, render=False, progress=False)
        answers[item.id] = turn.text
    scores, unavailable = caption_scores({item.id: item.captions for item in items}, answers, list(task.metrics))
    examples = [{"id": item.id, "answer": answers[item.id], "reference": item.captions[0]} for item in items[:3]]
    return scores, {"unavailable": unavailable, "examples": examples}


# ------------------------------------------------------------------------------------------------ writing
def versions(java: bool) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    if java:
        run = subprocess.run(["java", "-version"], capture_output=True, text=True)
        found["java"] = (run.stderr.strip().splitlines() or ["?"])[0]
    return found


def markdown(results: dict) -> str:
    """Every task run as a table: metric, the paper's NExT-GPT figure, nextmm's, and the run's protocol."""
    lines = ["# nextmm benchmark results", "",
             "Written by `nextmm benchmark`; \"see paper\": the published figure was not copied with certainty."]
    for name, entry in results.items():
        protocol = entry["protocol"]
        lines += ["", f"## {name}: {entry['table']}", "",
                  f"model `{entry['model']}`, {protocol['samples']} items (limit {protocol['limit']}), seed "
                  f"{protocol['seed']}" + "".join(f", {k} {protocol[k]}" for k in PROTOCOL_KEYS if k in protocol),
                  "", "| metric | NExT-GPT (paper) | nextmm |", "|---|---|---|"]
        for metric, value in entry["metrics"].items():
            paper = entry["paper"].get(metric)
            ours = "unavailable" if value is None else f"{value:.4g}"
            lines.append(f"| {metric} | {'see paper' if paper is None else paper} | {ours} |")
    return "\n".join(lines) + "\n"


def write(output: Path, name: str, entry: dict) -> dict:
    """Put a task's entry into the JSON of every task run (created when absent); the markdown beside it."""
    from nextmm.atomic import staged_file

    results = {}
    if output.exists():
        try:
            results = json.loads(output.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ConfigError(f"output={output} holds no benchmark results ({error}): give another file") from None
    results[name] = entry
    output.parent.mkdir(parents=True, exist_ok=True)
    with staged_file(output) as path:
        path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    with staged_file(output.with_suffix(".md")) as path:
        path.write_text(markdown(results), encoding="utf-8")
    return results


# ---------------------------------------------------------------------------------------------------- CLI
def _instantiate(features: DictConfig, key: str):
    """``features.<key>`` built by Hydra; its own one-line errors (missing weights) pass through unwrapped."""
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(features[key])
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise ConfigError(f"features.{key}: {str(error).strip().splitlines()[0]}") from None


def main(cfg: DictConfig) -> None:
    from nextmm.cli.generate import answering_model, resolve_device, resolve_dtype
    from nextmm.inference.memory import check_memory

    # 1. the task and its items
    task = load_task(cfg.task)
    if cfg.limit is not None and not (isinstance(cfg.limit, int) and cfg.limit >= 1):
        raise ConfigError(f"limit={cfg.limit}: give a positive number of items, or null for all")
    check_memory(cfg.memory, cfg.memory_limit)
    if cfg.data_root is None:
        raise ConfigError("give data_root=<the folder of the task's data set> (docs/real_weights.md: Reproducing "
                          "the paper's tables)")
    values, changed = pinned(task, cfg.protocol)
    drawn = pick(load_items(cfg.data_root, task.data), task.samples, task.seed)
    items = drawn[: cfg.limit] if cfg.limit is not None else drawn
    if {"fid", "fd"} & set(task.metrics) and len(items) < 2:
        raise ConfigError(f"a Frechet distance needs at least 2 items, and {len(items)} are drawn: give limit=2 or more")
    if task.kind == "x_to_text" and (reason := java_missing()):
        raise ConfigError(f"the caption metrics run on Java (the PTB tokenizer, METEOR, SPICE): {reason}")
    device = resolve_device(cfg.device)
    progress = not cfg.quiet
    start = time.perf_counter()

    # 2. the networks the metrics look through (only the ones this task's metrics need)
    networks = {}
    if task.kind == "text_to_x":
        for key in dict.fromkeys(NETWORK[m] for m in task.metrics):
            networks[key] = _instantiate(cfg.features, key)
            if isinstance(networks[key], torch.nn.Module):
                networks[key] = networks[key].to(device).eval()

    # 3. the model, 4. asking
    model = answering_model(cfg, device, resolve_dtype(cfg.dtype, device))
    if task.kind == "text_to_x":
        scores, details = text_to_x(model, task, items, values, networks, seed=cfg.seed, device=device,
                                    progress=progress)
    else:
        scores, details = x_to_text(model, task, items, seed=cfg.seed, progress=progress)

    # 5. the entry
    name = Path(str(cfg.task)).stem
    entry = {
        "table": task.table,
        "model": cfg.model.name,
        "metrics": {k: None if v is None else round(v, 6) for k, v in scores.items()},
        "paper": OmegaConf.to_container(task.get("paper") or {}),
        **details,
        "protocol": {"data_root": str(cfg.data_root), "data": OmegaConf.to_container(task.data),
                     "samples": len(items), "drawn": len(drawn), "limit": cfg.limit, "seed": task.seed,
                     "generation_seed": cfg.seed, "prompt": task.prompt, "max_new_tokens": task.max_new_tokens,
                     **values, "changed": changed, "metric_settings": OmegaConf.to_container(task.metrics),
                     "features": {k: OmegaConf.to_container(cfg.features[k]) for k in networks},
                     # the network each metric looked through and its checkpoint file (PANNs: with its sha256)
                     "networks": {k: n.record for k, n in networks.items() if hasattr(n, "record")}},
        "versions": versions(java=task.kind == "x_to_text"),
        "device": str(device),
        "seconds": round(time.perf_counter() - start, 1),
    }
    output = Path(cfg.output)
    write(output, name, entry)
    print(json.dumps({name: entry}, indent=1))
    print(f"wrote {output} and {output.with_suffix('.md')}")
