import pytest

from nextmm.cli.inspect import STAGES, stage_parts
from nextmm.model import NextMM
from nextmm.training.trainable import part_of, set_trainable, trainable_names

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
