"""The whole model from weights in their real formats, on tiny components: the code path of nextgpt_7b."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from nextmm.config import load_model_config
from nextmm.modality import MODALITIES
from nextmm.model import NextMM
from nextmm.parts.llm import character_tokenizer
from nextmm.training.trainable import set_trainable
from nextmm.weights.trained import save_trained_parts


def perturb(module: nn.Module, scale: float = 0.05) -> None:
    """Move every parameter away from the seeded initialisation, so loaded weights cannot pass for a fresh build."""
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn_like(param))


def llm_weights(llm: nn.Module) -> dict[str, torch.Tensor]:
    """The base LLM's own weights by their transformers names, without peft's wrappers and added parameters."""
    return {name.replace(".base_layer", "").replace(".token_adapter", ""): param
            for name, param in llm.named_parameters()
            if "lora_" not in name and "trainable_tokens_delta" not in name}


def assert_loaded(loaded: dict, saved: dict, fresh: dict, what: str) -> None:
    """Every saved parameter came back exactly, and none of them is what the seeded build gives anyway."""
    assert loaded.keys() >= saved.keys(), (what, sorted(saved.keys() - loaded.keys())[:5])
    for name, value in saved.items():
        # the LLM's embedding matrices have nextmm's new tokens after the saved rows
        first = (slice(0, value.shape[0]),) if value.ndim else ()
        torch.testing.assert_close(loaded[name][first], value, rtol=0, atol=0, msg=f"{what}.{name}")
        assert not torch.equal(fresh[name][first], value), f"{what}.{name} is the seeded initialisation"


@pytest.fixture(scope="module")
def real_format(tmp_path_factory):
    """A tiny model's parts written as a user's checkpoints/ folder would hold them, every one with values a
    seeded build of the same config does not have."""
    root = tmp_path_factory.mktemp("checkpoints")
    source = NextMM.from_config("tiny")
    set_trainable(source, ["lora", "input_projector", "output_projectors", "new_tokens"])
    with torch.no_grad():
        for param in source.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))
    # transformers folder: the base LLM before nextmm's tokens and LoRA, and its tokenizer
    base = source.llm.get_base_model()
    llm = type(base)(base.config)
    llm.resize_token_embeddings(354)
    perturb(llm)
    llm.save_pretrained(root / "vicuna")
    character_tokenizer().save_pretrained(root / "vicuna")
    # imagebind_huge.pth-style state dict
    perturb(source.encoder)
    torch.save(source.encoder.model.state_dict(), root / "imagebind.pth")
    # diffusers folders
    for modality in MODALITIES:
        pipe = source.decoders.pipeline(modality)
        for component in pipe.components.values():
            if isinstance(component, nn.Module):
                perturb(component)
        pipe.save_pretrained(root / modality)
    save_trained_parts(source, root / "trained")

    cfg = load_model_config("tiny")
    cfg.llm.path = cfg.llm.tokenizer = str(root / "vicuna")
    cfg.encoder.checkpoint = str(root / "imagebind.pth")
    for modality in MODALITIES:
        cfg.decoders[modality].path = str(root / modality)
        cfg.decoders[modality].components = None
    cfg.trained = str(root / "trained")
    return source, llm, cfg


def test_every_part_loads_from_its_own_format(real_format):
    source, saved_llm, cfg = real_format
    model = NextMM.from_config(cfg)
    fresh = NextMM.from_config("tiny")  # the same seed: what the model holds if a load silently did nothing
    # ImageBind from the .pth, the projectors from the trained parts
    for part in ("encoder", "input_projector", "output_projectors"):
        assert_loaded(dict(getattr(model, part).named_parameters()), dict(getattr(source, part).named_parameters()),
                      dict(getattr(fresh, part).named_parameters()), part)
    # LoRA and the new tokens' rows from the adapter
    trained = {n: p for n, p in source.llm.named_parameters() if "lora_" in n or "trainable_tokens_delta" in n}
    assert trained
    assert_loaded(dict(model.llm.named_parameters()), trained, dict(fresh.llm.named_parameters()), "adapter")
    # the base LLM from the transformers folder (its first 354 rows; the rest are nextmm's new tokens)
    assert_loaded(llm_weights(model.llm.get_base_model()), dict(saved_llm.named_parameters()),
                  llm_weights(fresh.llm.get_base_model()), "llm")
    # the decoders from the diffusers folders, loaded on first use
    assert model.decoders.loaded() == ()
    for modality in MODALITIES:
        for name, component in source.decoders.pipeline(modality).components.items():
            if isinstance(component, nn.Module):
                assert_loaded(dict(getattr(model.decoders.pipeline(modality), name).named_parameters()),
                              dict(component.named_parameters()),
                              dict(getattr(fresh.decoders.pipeline(modality), name).named_parameters()),
                              f"{modality}.{name}")


def test_a_turn_runs_on_the_loaded_model(real_format):
    _, _, cfg = real_format
    turn = NextMM.from_config(OmegaConf.create(OmegaConf.to_container(cfg))).chat(
        "surf vlog", outputs=["audio"], max_new_tokens=4, num_inference_steps=2, progress=False)
    assert ("audio", 0) in turn.outputs and turn.audios[0].ndim == 1  # the model may add others itself
