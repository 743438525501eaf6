"""Saving and loading nextmm's own trained parts, in formats that never unpickle code.

A trained-parts folder holds:
    projectors.safetensors   input_projector.* and output_projectors.<modality>.*
    adapter/                 the peft adapter: LoRA and the new-token rows (adapter_model.safetensors)
    tokenizer/               the LLM tokenizer with nextmm's added tokens
    config.yaml              the resolved model config
    embeddings.safetensors   optional: the full input-embedding and LM-head matrices, embed_tokens.weight and
                             lm_head.weight (V, H), for checkpoints whose whole matrices were trained (the official
                             NExT-GPT release, see nextmm.weights.convert); they replace the base LLM's matrices
The frozen parts (ImageBind, Vicuna, the diffusion decoders) load from their own formats elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from peft.utils import load_peft_weights
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from nextmm.atomic import staged_folder
from nextmm.errors import ConfigError
from nextmm.weights.safe import not_safetensors, read_safetensors

PROJECTORS_FILE = "projectors.safetensors"
ADAPTER_DIR = "adapter"
TOKENIZER_DIR = "tokenizer"
CONFIG_FILE = "config.yaml"
EMBEDDINGS_FILE = "embeddings.safetensors"
PROJECTOR_PARTS = ("input_projector", "output_projectors")


def projector_state(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for prefix in PROJECTOR_PARTS:
        for key, value in getattr(model, prefix).state_dict().items():
            state[f"{prefix}.{key}"] = value.detach().contiguous().cpu()
    return state


def projector_state_of(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The projectors' tensors of a whole model's state dict, as ``projector_state`` gives them."""
    return {k: v.detach().contiguous().cpu() for k, v in state.items() if k.split(".", 1)[0] in PROJECTOR_PARTS}


def save_trained_parts(model: nn.Module, folder: str | Path, state: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Write the trained parts to ``folder`` atomically: a crash leaves the old folder or none.

    ``state``: the model's whole state dict, keyed as ``model.state_dict()``, to write instead of the model's own
    tensors; for a model sharded over processes (FSDP), whose gathered state dict this is.
    """
    folder = Path(folder)
    with staged_folder(folder) as staging:
        save_file(projector_state(model) if state is None else projector_state_of(state), staging / PROJECTORS_FILE)
        if getattr(model, "trained_embeddings", False):  # loaded from a folder with full matrices: keep them
            weights = embedding_weights(model.llm)
            if state is not None:
                names = {id(param): name for name, param in model.named_parameters(remove_duplicate=False)}
                weights = {key: state[names[id(weight)]] for key, weight in weights.items()}
            save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, staging / EMBEDDINGS_FILE)
        # Not the whole embedding matrices even when the base was resized: the new rows are in the adapter's
        # token deltas, and whole trained matrices in embeddings.safetensors.
        llm_state = None if state is None else {k.removeprefix("llm."): v for k, v in state.items() if k.startswith("llm.")}
        model.llm.save_pretrained(staging / ADAPTER_DIR, save_embedding_layers=False, state_dict=llm_state)
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(staging / TOKENIZER_DIR)
        config = OmegaConf.to_container(model.config, resolve=True)
        config.pop("trained", None)
        OmegaConf.save(OmegaConf.create(config), staging / CONFIG_FILE)
    return folder


def load_trained_parts(model: nn.Module, folder: str | Path) -> None:
    """Load projectors, full embeddings (when the folder has them) and adapter from ``folder``, with a
    strict check of names and shapes. Applying embeddings sets ``model.trained_embeddings = True``, so
    that ``save_trained_parts`` writes them back."""
    folder = Path(folder)
    projectors, adapter = folder / PROJECTORS_FILE, folder / ADAPTER_DIR
    if (adapter / "adapter_model.bin").is_file() and not (adapter / "adapter_model.safetensors").is_file():
        raise ConfigError(pickled_adapter(adapter))
    for needed in (projectors, adapter / "adapter_model.safetensors"):
        if not needed.is_file():
            raise ConfigError(
                f"trained parts not found: {needed} is missing (expected a folder written by nextmm with "
                f"{PROJECTORS_FILE} and {ADAPTER_DIR}/; train one with `nextmm train` or convert the official checkpoint)"
            )
    state = read_safetensors(projectors)
    check_state_dict(projector_state(model), state, str(projectors))
    for prefix in ("input_projector", "output_projectors"):
        getattr(model, prefix).load_state_dict(
            {k.split(".", 1)[1]: v for k, v in state.items() if k.split(".", 1)[0] == prefix}
        )
    if (folder / EMBEDDINGS_FILE).is_file():
        load_embeddings(model, folder / EMBEDDINGS_FILE)
    try:
        weights = load_peft_weights(str(adapter), device="cpu")
    except SafetensorError as error:
        raise ConfigError(not_safetensors(adapter / "adapter_model.safetensors", error)) from None
    expected = get_peft_model_state_dict(model.llm, save_embedding_layers=False)
    check_state_dict(expected, weights, str(adapter))
    set_peft_model_state_dict(model.llm, weights)


def pickled_adapter(adapter: Path) -> str:
    return (f"{adapter} holds adapter_model.bin, a pickle, which nextmm never loads (it can run code): save the "
            "adapter as adapter_model.safetensors (peft's save_pretrained with safe_serialization=True)")


def embedding_weights(llm: nn.Module) -> dict[str, torch.Tensor]:
    """The LLM's full input-embedding and LM-head matrices, (V, H) each, beneath peft's token wrappers
    (``token_adapter.base_layer.weight``): ``embed_tokens.weight`` and, unless tied, ``lm_head.weight``."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    layers = {"embed_tokens.weight": base.get_input_embeddings()}
    if not base.config.tie_word_embeddings:
        layers["lm_head.weight"] = base.get_output_embeddings()
    return {name: _innermost(layer).weight for name, layer in layers.items()}


def load_embeddings(model: nn.Module, path: str | Path) -> None:
    """Copy ``embeddings.safetensors`` into the base embedding and LM-head matrices, after a shape check.

    peft's token layers keep a copy of the new tokens' original rows (used to unmerge); it is refreshed so
    that it matches the new base matrices. The new tokens' trained rows still come from the adapter.
    """
    state = read_safetensors(path)
    weights = embedding_weights(model.llm)
    check_state_dict(weights, state, str(path))
    with torch.no_grad():
        for name, weight in weights.items():
            weight.copy_(state[name])
        for module in model.llm.modules():
            if isinstance(module, TrainableTokensLayer) and module.tied_adapter is None:
                base = module.get_base_layer().weight
                for adapter, rows in module.token_indices.items():
                    module.trainable_tokens_original[adapter] = base[rows].detach().clone()
    model.trained_embeddings = True


def _innermost(module: nn.Module) -> nn.Module:
    """The plain layer beneath peft's wrappers (TrainableTokensWrapper -> token_adapter -> base_layer)."""
    while True:
        if hasattr(module, "token_adapter"):
            module = module.token_adapter
        elif hasattr(module, "base_layer"):
            module = module.base_layer
        else:
            return module


def check_state_dict(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a ConfigError naming the tensors that are missing, unexpected or of the wrong shape."""
    problems = []
    for key in expected.keys() - found.keys():
        problems.append(f"missing {key} {tuple(expected[key].shape)}")
    for key in found.keys() - expected.keys():
        problems.append(f"unexpected {key} {tuple(found[key].shape)}")
    for key in expected.keys() & found.keys():
        if tuple(expected[key].shape) != tuple(found[key].shape):
            problems.append(f"{key} has shape {tuple(found[key].shape)}, model expects {tuple(expected[key].shape)}")
    if problems:
        problems.sort()
        shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise ConfigError(f"{source} does not fit this model: {shown}")
