import pytest
import torch

from nextmm.cli.inspect import STAGES, stage_parts
from nextmm.model import NextMM
from nextmm.training.trainable import part_of, set_trainable, store_frozen_in, trainable_names

EXPECTED_PARTS = {
    "encoder_side": {"input_projector"},
    "decoder_side": {"output_projectors", "new_tokens"},
    "modality_switching": {"lora", "input_projector", "output_projectors", "new_tokens"},
}


@pytest.fixture(scope="module")
def model():
    return NextMM.from_config("tiny")


def test_stage_configs_declare_the_expected_parts():
    assert {stage: set(stage_parts(stage)) for stage in STAGES} == EXPECTED_PARTS


@pytest.mark.parametrize("stage", STAGES)
def test_set_trainable_enables_exactly_the_declared_parameters(model, stage):
    counts = set_trainable(model, stage_parts(stage))
    names = trainable_names(model)
    assert {part_of(n) for n in names} == EXPECTED_PARTS[stage]
    assert all(counts[p] > 0 for p in EXPECTED_PARTS[stage])
    # frozen forever: ImageBind and the base LLM weights
    assert not any(n.startswith("encoder.") for n in names)
    assert not any(part_of(n) == "llm" for n in names)


def test_new_token_rows_are_the_added_tokens_only(model):
    set_trainable(model, ["new_tokens"])
    (name, param), *_ = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert param.shape[0] == 2 + 4 + 8 + 24  # <Img>, </Img>, [IMG0..3], [AUD0..7], [VID0..23]


def test_unknown_part_is_rejected(model):
    with pytest.raises(ValueError, match="unknown trainable parts"):
        set_trainable(model, ["decoders"])



def test_half_precision_keeps_only_the_frozen_pretrained_weights_in_half():
    """train.mixed_precision=bf16: ImageBind's and the base LLM's frozen weights go to bfloat16; what nextmm trains
    or saves (projectors, LoRA, token rows, even when frozen in this stage) and the embedding and output matrices,
    into which peft writes the trained token rows, stay float32."""
    model = NextMM.from_config("tiny")
    set_trainable(model, ["output_projectors", "new_tokens"])  # the decoder side: LoRA and input projector frozen
    assert store_frozen_in(model, "no") == 0
    assert {param.dtype for param in model.parameters()} == {torch.float32}
    stored = store_frozen_in(model, "bf16")
    halved = {name for name, param in model.named_parameters() if param.dtype == torch.bfloat16}
    assert stored == sum(p.numel() for n, p in model.named_parameters() if n in halved) > 0
    assert {part_of(name) for name in halved} == {"encoder", "llm"}
    assert any(name.startswith("encoder.") for name in halved)
    assert any(".layers.0.mlp.down_proj." in name for name in halved)
    assert any(".self_attn.q_proj.base_layer." in name for name in halved)  # under a LoRA adapter
    assert not [name for name in halved if any(k in name for k in ("lora_", "token_adapter", "embed_tokens", "lm_head"))]
    kept = {part_of(name) for name, param in model.named_parameters() if name not in halved}
    assert {"input_projector", "output_projectors", "lora", "new_tokens"} <= kept
