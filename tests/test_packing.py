"""Sequence packing (train.pack_sequences) and the fused optimizer (optimizer.fused) of the NExT-GPT stages."""

import pytest
import torch
from test_sharded import deepspeed_accelerator, stage_settings
from test_stages import train

import nextmm.model as model_module
from nextmm.data import Batch, Output
from nextmm.errors import ConfigError
from nextmm.inference.prompt import Media, Message, prompt_segments
from nextmm.modality import signal_tokens
from nextmm.model import IGNORE_INDEX, NextMM
from nextmm.training.losses import StageLoss
from nextmm.training.optimization import build_optimizer
from nextmm.training.sharded import configure_engine
from nextmm.training.trainable import set_trainable

STAGE_3 = ["lora", "input_projector", "output_projectors", "new_tokens"]


@pytest.fixture(scope="module")
def model(one_thread):
    torch.manual_seed(0)
    model = NextMM.from_config("tiny")
    set_trainable(model, STAGE_3)
    return model


def signals(model, modality):
    return "".join(signal_tokens(modality, model.config.signal_tokens[modality]))


def stage3_batch(model) -> Batch:
    """Stage-3-like samples of 171, 75, 56 and 44 tokens: a long image question, text -> image (with target media
    for the denoising term), text -> audio + image, and a short text-only turn."""
    picture = Media("image", torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(0)))
    conversations = [
        ([Message("user", "what is in this picture, tell me in many words please", [picture]),
          Message("assistant", "a red square on a blue field, drawn by hand, with a small circle in the corner")], []),
        ([Message("user", "make a picture of a cat"), Message("assistant", "here it is " + signals(model, "image"))],
         [Output("image", "a cat", media=torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1)]),
        ([Message("user", "hum"), Message("assistant", f"{signals(model, 'audio')} and {signals(model, 'image')}")],
         [Output("audio", "a low hum"), Output("image", "a dog")]),
        ([Message("user", "hi"), Message("assistant", "hello")], []),
    ]
    return Batch([prompt_segments(messages, train_answers=True) for messages, _ in conversations],
                 [outputs for _, outputs in conversations], num_tokens=0)


def llm_inputs(model, loss, batch) -> dict:
    """The tensors the LLM received in one StageLoss forward."""
    seen = {}

    def spy(module, args, kwargs):
        seen.update(kwargs)

    hook = model.llm.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        torch.manual_seed(3)  # the denoising term's noise and timesteps
        terms = loss(batch)
    finally:
        hook.remove()
    return {"terms": terms, **seen}


def test_packed_rows_give_every_term_and_gradient_of_the_padded_batch(model):
    batch = stage3_batch(model)
    settings = {"alignment_weight": 1.0, "denoising_weight": 0.5}
    padded = llm_inputs(model, StageLoss(model, **settings), batch)
    packed = llm_inputs(model, StageLoss(model, **settings, pack=True), batch)
    assert set(packed["terms"]) == {"loss", "nll", "align/image", "align/audio", "denoise/image"}
    for name, value in padded["terms"].items():
        torch.testing.assert_close(packed["terms"][name], value, rtol=1e-5, atol=1e-5)
    grads = {}
    for name, run in (("padded", padded), ("packed", packed)):
        model.zero_grad()
        run["terms"]["loss"].backward()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    assert set(grads["packed"]) == set(grads["padded"]) and any(".lora_" in n for n in grads["packed"])
    for name, grad in grads["padded"].items():
        torch.testing.assert_close(grads["packed"][name], grad, rtol=1e-4, atol=1e-5)

    # the LLM got 3 rows of the longest sample's 171 tokens (75 + 56 share one) instead of 4, no mask
    assert padded["inputs_embeds"].shape[:2] == (4, 171) and padded["attention_mask"] is not None
    assert packed["inputs_embeds"].shape[:2] == (3, 171) and packed["attention_mask"] is None
    assert padded["attention_mask"].sum() == 171 + 75 + 56 + 44
    positions = packed["position_ids"]
    assert (positions == 0).sum(dim=1).tolist() == [1, 3, 2]  # sample starts, and the padding's in rows 1 and 2
    assert positions[1, 75] == 0 and positions[1, 74] == 74


def test_a_packed_sample_sees_nothing_of_the_sample_before_it(model):
    text = [[Message("user", "first question, rather long"), Message("assistant", "an answer")],
            [Message("user", "second"), Message("assistant", "another answer")]]
    changed = [[Message("user", "something else entirely, and longer"), Message("assistant", "one more")], text[1]]

    def second_sample_logits(conversations, pack):
        segments = [prompt_segments(c, train_answers=True) for c in conversations]
        embedded = model.embed_segments(segments, pack=pack, pack_length=200)
        with torch.no_grad():
            logits = model.llm(inputs_embeds=embedded.inputs_embeds, attention_mask=embedded.attention_mask,
                               position_ids=embedded.position_ids, use_cache=False).logits
        if not pack:
            return logits[1, : embedded.attention_mask[1].sum()], embedded
        row, start, length = embedded.samples[1]
        return logits[row, start : start + length], embedded

    packed, embedded = second_sample_logits(text, pack=True)
    assert embedded.inputs_embeds.shape[0] == 1 and embedded.samples[1][1] > 0  # one row, sample 2 after sample 1
    other, other_embedded = second_sample_logits(changed, pack=True)
    assert other_embedded.samples[1][1] != embedded.samples[1][1]  # sample 1 changed, length included
    alone, _ = second_sample_logits(text, pack=False)
    torch.testing.assert_close(other, packed, rtol=0, atol=1e-5)
    torch.testing.assert_close(packed, alone, rtol=0, atol=1e-5)


def test_packing_refuses_samples_that_do_not_fit_or_whose_first_token_is_labelled(model):
    segments = [prompt_segments([Message("user", "a question"), Message("assistant", "an answer")], train_answers=True)]
    length = len(model.encode(segments[0])[0])
    with pytest.raises(ValueError, match=f"a sample of {length} tokens does not fit rows of pack_length=5"):
        model.embed_segments(segments, pack=True, pack_length=5)
    encode = model.encode
    try:
        model.encode = lambda sample: (encode(sample)[0], [encode(sample)[0][0], *encode(sample)[1][1:]])
        with pytest.raises(ValueError, match="a sample's first token has a label"):
            model.embed_segments(segments, pack=True)
    finally:
        del model.encode
    embedded = model.embed_segments(segments * 2, pack=True, pack_length=2 * length)  # one row: BOS, BOS
    assert embedded.labels[0, 0] == IGNORE_INDEX and embedded.labels[0, length] == IGNORE_INDEX


def test_rows_are_as_few_padded_tokens_as_first_fit_finds_and_never_more_than_right_padding():
    sizes = [155, 164, 69, 124, 187, 183]

    def laid_out(length):
        rows = model_module._pack_rows(sizes, length)
        assert sorted(i for row in rows for i in row) == list(range(6))
        fills = [sum(sizes[i] for i in row) for row in rows]
        assert max(fills) <= length
        return len(rows), max(fills)

    assert laid_out(187) == (6, 187)  # nothing pairs within the longest sample's width: as right-padded
    assert laid_out(240) == (5, 193)  # 965 tokens run instead of 6 x 187 = 1122 (rows of 240 would be 5 x 233)
    assert laid_out(1000) == (1, 882)
    assert laid_out(500) == (5, 193)  # 2 rows of 494 would run 988


@pytest.mark.parametrize(("settings", "message"), [
    (["train.pack_sequences=yes"], r"train.pack_sequences=yes: give true or false"),
    (["train.pack_sequences=true", "train.pack_length=0"], r"train.pack_length=0: give a whole number of tokens >= 1"),
    (["train.pack_length=512"], r"train.pack_length=512 does nothing without train.pack_sequences=true"),
    (["train.pack_sequences=true", "train.pack_length=100"],
     r"train.pack_length=100 is below data.max_length=256: a sample that long would fit no row"),
    (["train.pack_sequences=true", "model.llm.attn_implementation=flash_attention_2"],
     (r"model.llm.attn_implementation=flash_attention_2: transformers keeps packed samples apart there only in a "
      r"batch of one row; set model.llm.attn_implementation=sdpa")),
    (["optimizer.fused=sometimes"], r"optimizer.fused=sometimes: give auto, true or false"),
])
def test_settings_that_cannot_work_are_refused_before_any_work(root, tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        train("decoder_side", root, tmp_path, "data=cc3m", "train.max_steps=1", *settings)
    assert not (tmp_path / "checkpoints").exists()


def test_a_packed_stage_repeats_the_padded_stages_losses(root, tmp_path, monkeypatch):
    common = ["data=t2m", "train.max_steps=3", "train.batch_size=4", "optimizer.lr=1e-2", "optimizer.warmup_steps=0",
              "model.llm.lora.dropout=0.0", "checkpoint.every=1000"]  # dropout would draw other masks per shape
    padded = train("modality_switching", root, tmp_path / "padded", *common)["losses"]
    shapes = []  # (samples, rows) of each packed batch
    pack = model_module._pack_batch
    monkeypatch.setattr(model_module, "_pack_batch", lambda embeds, *rest: shapes.append(
        (len(embeds), pack(embeds, *rest).inputs_embeds.shape[0])) or pack(embeds, *rest))
    packed = train("modality_switching", root, tmp_path / "packed", *common, "train.pack_sequences=true",
                   "train.pack_length=512")["losses"]  # data.max_length: t2m's samples are alike, rows of the longest hold one
    assert len(shapes) == 3 and all(rows < samples for samples, rows in shapes), shapes
    assert packed == pytest.approx(padded, rel=1e-5) and len(set(padded)) == 3


def test_fused_adamw_is_taken_where_asked_and_steps_as_the_unfused_one():
    def steps(fused):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        optimizer = build_optimizer(net, {"lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.01, "fused": fused})
        data = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
        losses = []
        for _ in range(5):
            loss = net(data).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        return optimizer, losses

    fused, fused_losses = steps(True)  # torch 2.14 has a fused CPU AdamW
    unfused, unfused_losses = steps(False)
    assert fused.defaults["fused"] is True and not unfused.defaults["fused"]
    assert not steps("auto")[0].defaults["fused"]  # auto fuses on CUDA only: CPU runs step as they always did
    assert fused_losses == pytest.approx(unfused_losses, rel=1e-5) and fused_losses[-1] < fused_losses[0]
    with pytest.raises(ConfigError, match="optimizer.fused=yes: give auto, true or false"):
        steps("yes")
    nowhere = torch.nn.Linear(2, 2, device="meta")  # a device torch has no fused AdamW for
    assert build_optimizer(nowhere, {"lr": 1, "betas": [0.9, 0.999], "weight_decay": 0, "fused": "auto"}).defaults[
        "fused"] is False
    with pytest.raises(ConfigError, match=r"optimizer.fused=true: torch .* has no fused AdamW for parameters on meta; "
                                          r"set optimizer.fused=auto or false"):
        build_optimizer(nowhere, {"lr": 1, "betas": [0.9, 0.999], "weight_decay": 0, "fused": True})


def test_the_offloaded_deepspeed_optimizer_refuses_a_fused_adamw_insisted_on():
    with pytest.raises(ConfigError, match=r"optimizer.fused=true: with the optimizer offloaded, DeepSpeed's CPU Adam "
                                          r"steps instead of torch's fused AdamW; set optimizer.fused=auto"):
        configure_engine(deepspeed_accelerator(offload_optimizer_device="cpu"), stage_settings(fused=True))
    configure_engine(deepspeed_accelerator(offload_optimizer_device="cpu"), stage_settings(fused="auto"))
    configure_engine(deepspeed_accelerator(), stage_settings(fused=True))  # not offloaded: the fused AdamW steps
