"""The whole model from weights in their real formats, on tiny components: the code path of nextgpt_7b."""

import pytest
import torch
from omegaconf import OmegaConf

from nextmm.config import load_model_config
from nextmm.modality import MODALITIES
from nextmm.model import NextMM
from nextmm.parts.llm import character_tokenizer
from nextmm.training.trainable import set_trainable
from nextmm.weights.trained import save_trained_parts


@pytest.fixture(scope="module")
def real_format(tmp_path_factory):
    """A tiny model's parts written as a user's checkpoints/ folder would hold them."""
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
    llm.model.embed_tokens.weight.data.normal_()
    llm.save_pretrained(root / "vicuna")
    character_tokenizer().save_pretrained(root / "vicuna")
    # imagebind_huge.pth-style state dict
    torch.save(source.encoder.model.state_dict(), root / "imagebind.pth")
    # diffusers folders
    for modality in MODALITIES:
        source.decoders.pipeline(modality).save_pretrained(root / modality)
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
    # ImageBind from the .pth, the projectors and adapter from the trained parts
    for prefix in ("encoder", "input_projector", "output_projectors"):
        for (name, a), (_, b) in zip(getattr(model, prefix).state_dict().items(),
                                     getattr(source, prefix).state_dict().items()):
            torch.testing.assert_close(a, b, msg=f"{prefix}.{name}")
    lora = {n: p for n, p in model.llm.named_parameters() if "lora_" in n or "trainable_tokens_delta" in n}
    source_lora = dict(source.llm.named_parameters())
    assert lora and all(torch.equal(p, source_lora[n]) for n, p in lora.items())
    # the base LLM from the transformers folder (its first rows; the rest are nextmm's new tokens)
    loaded = model.llm.get_base_model().model.layers[0].mlp.down_proj.weight
    torch.testing.assert_close(loaded, saved_llm.model.layers[0].mlp.down_proj.weight)
    embeddings = model.llm.get_base_model().get_input_embeddings().token_adapter.base_layer.weight
    torch.testing.assert_close(embeddings[:354], saved_llm.model.embed_tokens.weight)
    # the decoders from the diffusers folders, loaded on first use
    assert model.decoders.loaded() == ()
    unet = model.decoders.pipeline("image").unet
    for (name, a), (_, b) in zip(unet.state_dict().items(), source.decoders.pipeline("image").unet.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_turn_runs_on_the_loaded_model(real_format):
    _, _, cfg = real_format
    turn = NextMM.from_config(OmegaConf.create(OmegaConf.to_container(cfg))).chat(
        "surf vlog", outputs=["audio"], max_new_tokens=4, num_inference_steps=2, progress=False)
    assert ("audio", 0) in turn.outputs and turn.audios[0].ndim == 1  # the model may add others itself
