"""``python -m nextmm generate prompt="surf vlog"``: one turn, written to files; ``prompts=<file>``: a turn for
each line, ``batch_size`` at a time, each in its own numbered folder.

Prints the text answer and the paths of what it wrote. Bad input is one line on stderr, exit code 2,
and nothing is written.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig

from nextmm.atomic import staged_folder
from nextmm.checks import check, flag, resolve_device, resolve_dtype, whole  # noqa: F401 (commands import these)
from nextmm.errors import ConfigError, UserError
from nextmm.inference.conversation import Conversation, GenerationSettings, generate_turns, to_media
from nextmm.inference.memory import check_memory, plan_memory
from nextmm.inference.outputs import claimed_folder, media_path, write_turn
from nextmm.inference.prompt import Message
from nextmm.modality import MODALITIES
from nextmm.model import NextMM
from nextmm.parts.decoders import pixel_factor
from nextmm.parts.llm import build_tokenizer, context_length

SETTINGS = ("max_new_tokens", "temperature", "top_p", "num_inference_steps", "guidance_scale", "height", "width",
            "num_frames", "audio_seconds", "seed", "keep_claims")


def as_list(value) -> list:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else [str(value)]


def check_flag(cfg: DictConfig, key: str) -> bool:
    check({key: cfg[key]}, {key: (flag, "true or false")}, required=[key])
    return cfg[key]


def check_prompt_length(prompt: str, model_cfg: DictConfig) -> None:
    """A prompt longer than the LLM's context fails here, before the model loads (the turn checks the exact
    length with the conversation format and media around it)."""
    context = context_length(model_cfg.llm)
    if len(prompt) <= context:  # a token holds one character or more: no need to tokenize
        return
    tokens = len(build_tokenizer(model_cfg.llm, model_cfg.signal_tokens)(prompt).input_ids)
    if tokens >= context:
        raise UserError(f"the prompt is {tokens} tokens, longer than the model's context of {context}: shorten it")


def turn_settings(cfg: DictConfig) -> dict:
    """The generation settings the command line gives, checked (a bad value fails here, before the model loads)."""
    settings = {key: cfg[key] for key in SETTINGS}
    settings["outputs"] = as_list(cfg.outputs) or None
    for key in ("keep_claims", "quiet"):
        check_flag(cfg, key)
    check_memory(cfg.memory, cfg.memory_limit)
    GenerationSettings().updated(**settings)
    for key in ("height", "width"):
        for modality in ("image", "video"):
            factor = pixel_factor(cfg.model.decoders[modality])
            if settings[key] is not None and settings[key] % factor:
                raise ConfigError(f"{key}={settings[key]}: the {modality} decoder needs a multiple of {factor} pixels")
    return settings


def answering_model(cfg: DictConfig, device: torch.device, dtype: torch.dtype, *, batch: int = 1) -> NextMM:
    """The command's model, placed as its ``memory`` says; ``memory=auto`` plans for ``batch`` conversations at the
    command's sizes (height, width, num_frames, audio_seconds where it has them) within ``memory_limit``."""
    sizes = {key: cfg.get(key) for key in ("height", "width", "num_frames", "audio_seconds")}
    plan = plan_memory(cfg.memory, cfg.model, device, dtype, memory_limit=cfg.memory_limit, batch=batch, sizes=sizes)
    return NextMM.from_config(cfg.model, device=device, dtype=dtype, memory=plan)


def read_prompts(cfg: DictConfig) -> list[str]:
    """The prompts file's lines (blank ones skipped), checked before the model loads."""
    if cfg.prompt or any(as_list(cfg[m]) for m in MODALITIES):
        raise UserError("prompts= answers a file of text prompts: give it without prompt=, image=, audio= or video=")
    check({"batch_size": cfg.batch_size}, {"batch_size": (whole(1), "a whole number >= 1")}, required=["batch_size"])
    path = Path(cfg.prompts)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except IsADirectoryError:
        raise UserError(f"prompts={path} is a folder: give a text file with one prompt per line") from None
    except FileNotFoundError:
        raise UserError(f"prompts={path}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"prompts={path} is not UTF-8 text: save it as UTF-8, one prompt per line") from None
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise UserError(f"prompts={path} holds no prompt: write one per line")
    for prompt in prompts:
        check_prompt_length(prompt, cfg.model)
    return prompts


def main(cfg: DictConfig) -> None:
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    output_dir = Path(cfg.output_dir)  # Hydra's run folder when not given (nextmm.cli.app.hydra_overrides)
    settings = turn_settings(cfg)
    if cfg.prompts is not None:
        return answer_prompts(cfg, read_prompts(cfg), settings, output_dir, device, dtype)
    timings = {}

    # Read the inputs first: a bad file fails in a second, before any model is built.
    start = time.perf_counter()
    media = {m: [to_media(m, path) for path in as_list(cfg[m])] for m in MODALITIES}
    if not cfg.prompt.strip() and not any(media.values()):
        raise UserError("empty prompt and no media: give prompt=..., or image=, audio= or video= to respond to")
    check_prompt_length(cfg.prompt, cfg.model)
    timings["read_inputs"] = time.perf_counter() - start

    with claimed_folder(output_dir, overwrite=check_flag(cfg, "overwrite")):
        start = time.perf_counter()
        model = answering_model(cfg, device, dtype)
        timings["load"] = time.perf_counter() - start

        conversation = Conversation(model, progress=not cfg.quiet, **settings)
        turn = conversation.say(cfg.prompt, images=media["image"], audios=media["audio"], videos=media["video"])
        timings.update(turn.timings_s)

        result = write_turn(turn, output_dir, prompt=cfg.prompt, model=cfg.model.name, seed=cfg.seed,
                            timings_s=timings)

    print(turn.text)
    for modality, index in turn.outputs:
        print(media_path(output_dir, modality, index))
    print(result)


def answer_prompts(cfg: DictConfig, prompts: list[str], settings: dict, output_dir: Path, device: torch.device,
                   dtype: torch.dtype) -> None:
    """Each prompt's turn in ``output_dir/<n>/`` (n from 0001, in the file's order); the folder appears whole,
    when the last turn is written."""
    width = max(4, len(str(len(prompts))))
    lines = []
    with claimed_folder(output_dir, overwrite=check_flag(cfg, "overwrite")), staged_folder(output_dir) as staging:
        model = answering_model(cfg, device, dtype, batch=cfg.batch_size)
        generation = GenerationSettings(progress=not cfg.quiet).updated(**settings)
        for first in range(0, len(prompts), cfg.batch_size):
            batch = prompts[first : first + cfg.batch_size]
            turns = generate_turns(model, [[Message("user", prompt)] for prompt in batch], generation)
            for number, (prompt, turn) in enumerate(zip(batch, turns), start=first + 1):
                name = f"{number:0{width}d}"
                write_turn(turn, staging / name, prompt=prompt, model=cfg.model.name, seed=cfg.seed)
                lines += [f"[{name}] {turn.text}", *(str(media_path(output_dir / name, m, i)) for m, i in turn.outputs)]
    print("\n".join(lines))
