"""llm.quantize: the pretrained LLM's linear layers loaded quantized by bitsandbytes (int8, nf4), on a CPU here.

The tiny model's LLM is saved as a transformers folder (the format Vicuna's weights come in) and loaded back
through llm.path, as the real model loads Vicuna."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

from nextmm.config import conf_dir
from nextmm.errors import ConfigError
from nextmm.model import NextMM
from nextmm.parts.llm import is_quantized

bnb = pytest.importorskip("bitsandbytes", reason="llm.quantize needs bitsandbytes (the quantize extra)")

FAST = {"max_new_tokens": 6, "num_inference_steps": 2, "progress": False}


@pytest.fixture(scope="module")
def llm_folder(tmp_path_factory):
    architecture = OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / "tiny.yaml").llm.architecture)
    architecture["intermediate_size"] = 128  # bitsandbytes' CPU 4-bit kernel takes widths in blocks (Vicuna's are)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llm")
    LlamaForCausalLM(LlamaConfig(**architecture)).save_pretrained(folder)
    return folder


def linear_layers(model: NextMM) -> dict[str, type]:
    """The class of each decoder layer's MLP down projection (peft's LoRA wraps attention, not the MLP)."""
    layers = model.llm.get_base_model().model.layers
    return {type(layer.mlp.down_proj).__name__ for layer in layers}


@pytest.mark.parametrize("kind, layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_a_quantized_llm_answers_and_keeps_its_weights_smaller(llm_folder, kind, layer):
    full = NextMM.from_config("tiny", overrides=[f"llm.path={llm_folder}"])
    quantized = NextMM.from_config("tiny", overrides=[f"llm.path={llm_folder}", f"llm.quantize={kind}"])
    assert is_quantized(quantized.llm) and not is_quantized(full.llm)
    assert linear_layers(quantized) == {layer} and linear_layers(full) == {"Linear"}
    size = {name: model.llm.get_base_model().get_memory_footprint() for name, model in
            (("full", full), ("quantized", quantized))}
    assert size["quantized"] < size["full"]
    turn = quantized.chat("surf vlog", outputs=["image"], **FAST)
    assert turn.outputs == [("image", 0)] and np.asarray(turn.images[0]).shape == (64, 64, 3)
    ids = torch.tensor([[1, 40, 41, 42]])
    with torch.no_grad():  # the same network, to quantization's precision
        gap = (quantized.llm(input_ids=ids).logits - full.llm(input_ids=ids).logits).abs().max()
    assert 0 < gap < 1.0


@pytest.mark.parametrize("overrides, message", [
    (["llm.quantize=nf4"], "llm.quantize=nf4 quantizes pretrained weights: set llm.path"),
    (["llm.quantize=fp3", "llm.path={folder}"], "llm.quantize=fp3: give null, int8 or nf4"),
])
def test_quantize_settings_that_cannot_work_are_one_line(llm_folder, overrides, message):
    with pytest.raises(ConfigError) as error:
        NextMM.from_config("tiny", overrides=[o.format(folder=llm_folder) for o in overrides])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_stage_refuses_a_quantized_llm_before_any_work(tmp_path):
    from nextmm.cli import compose_config
    from nextmm.recipes import encoder_side

    cfg = compose_config("stage/encoder_side", ["model=tiny", "model.llm.quantize=nf4", f"output_dir={tmp_path / 'o'}"])
    with pytest.raises(ConfigError, match="model.llm.quantize=nf4 is for answering: a stage trains the LLM in full"):
        encoder_side.main(cfg)
    assert not (tmp_path / "o").exists()


def test_a_memory_plan_that_quantizes_loads_the_llm_quantized(llm_folder):
    """memory=auto hands the model a plan; its quantization reaches the LLM (and the config it records)."""
    from nextmm.inference.memory import MemoryPlan

    model = NextMM.from_config("tiny", overrides=[f"llm.path={llm_folder}"], memory=MemoryPlan("offload", "nf4"))
    assert is_quantized(model.llm) and linear_layers(model) == {"Linear4bit"}
    assert model.config.llm.quantize == "nf4" and model.memory.name == "offload+nf4"
    assert model.decoders.vae_slicing and model.decoders.vae_tiling
