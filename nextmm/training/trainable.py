"""What trains: every parameter belongs to one named part, and one function switches parts on.

Parts: ``encoder`` (ImageBind, frozen), ``input_projector``, ``llm`` (the base Vicuna weights, frozen),
``lora``, ``new_tokens`` (embedding and output rows of the markers and signal tokens) and
``output_projectors``. The diffusion decoders are not submodules and never train. Each stage config
lists its parts under ``trainable:``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from torch import nn

PARTS = ("encoder", "input_projector", "llm", "lora", "new_tokens", "output_projectors")
PRETRAINED = ("encoder", "llm")  # loaded from their own formats (ImageBind, Vicuna), never saved by a stage
HALF_PRECISION = {"fp16": torch.float16, "bf16": torch.bfloat16}


def part_of(name: str) -> str:
    """The part a parameter name of NextMM belongs to."""
    top = name.split(".", 1)[0]
    if top != "llm":
        if top not in PARTS:
            raise ValueError(f"parameter {name!r} belongs to no known part")
        return top
    if ".lora_" in name:
        return "lora"
    if "trainable_tokens_delta" in name:
        return "new_tokens"
    return "llm"


def set_trainable(model: nn.Module, parts: Iterable[str]) -> dict[str, int]:
    """Make exactly ``parts`` trainable; returns the trainable parameter count per part."""
    parts = set(parts)
    unknown = parts - set(PARTS)
    if unknown:
        raise ValueError(f"unknown trainable parts {sorted(unknown)}: use some of {', '.join(PARTS)}")
    counts = dict.fromkeys(sorted(parts), 0)
    for name, param in model.named_parameters():
        part = part_of(name)
        param.requires_grad = part in parts
        if param.requires_grad:
            counts[part] += param.numel()
    return counts


def count_by_part(model: nn.Module) -> dict[str, int]:
    counts = dict.fromkeys(PARTS, 0)
    for name, param in model.named_parameters():
        counts[part_of(name)] += param.numel()
    return counts


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def store_frozen_in(model: nn.Module, mixed_precision: str) -> int:
    """With ``train.mixed_precision`` fp16 or bf16, keep the frozen pretrained weights (ImageBind's and the base
    LLM's) in that dtype, as autocast computes with them anyway: half their memory, and no cast of each weight at
    every step. Everything nextmm trains or saves stays float32 (projectors, LoRA, token rows, even when frozen in
    this stage), and so do the embedding and output matrices, into which peft writes the trained token rows at
    each forward. Returns the number of parameters stored in half precision; none with ``no``."""
    dtype = HALF_PRECISION.get(mixed_precision)
    if dtype is None:
        return 0
    token_layers = {id(param) for module in model.modules() if isinstance(module, TrainableTokensLayer)
                    for param in module.parameters()}
    stored = 0
    for name, param in model.named_parameters():
        if (param.requires_grad or part_of(name) not in PRETRAINED or id(param) in token_layers
                or "embed_tokens" in name or "lm_head" in name):
            continue
        param.data = param.data.to(dtype)
        stored += param.numel()
    return stored
