"""The stage losses: alignment distances, min-SNR weights, and StageLoss on the tiny model."""

import pytest
import torch
from diffusers import DDPMScheduler

from nextmm.data import Batch, Output
from nextmm.inference.prompt import Media, Message, prompt_segments
from nextmm.modality import signal_tokens
from nextmm.model import NextMM
from nextmm.training.losses import (
    StageLoss,
    alignment_loss,
    denoising_loss,
    min_snr_weights,
)
from nextmm.training.trainable import set_trainable


@pytest.fixture(scope="module")
def model(one_thread):
    torch.manual_seed(0)
    model = NextMM.from_config("tiny")
    set_trainable(model, ["output_projectors", "new_tokens", "input_projector"])
    return model


def batch_of(*answers):
    """A batch asking for media; ``answers`` are lists of (modality, caption) each answer produces."""
    segments, outputs = [], []
    for answer in answers:
        text = " and ".join("".join(signal_tokens(m, {"image": 4, "audio": 8, "video": 24}[m])) for m, _ in answer)
        messages = [Message("user", "make it", [Media("image", torch.randn(3, 224, 224))]), Message("assistant", text)]
        segments.append(prompt_segments(messages, train_answers=True))
        outputs.append([Output(m, caption) for m, caption in answer])
    return Batch(segments, outputs, num_tokens=0)


def test_l2_is_the_mean_euclidean_distance_and_mse_the_mean_square():
    predicted = torch.zeros(2, 3, 4)
    target = torch.zeros(2, 3, 4)
    target[..., 0] = 3.0
    target[..., 1] = 4.0
    assert alignment_loss(predicted, target, "l2").item() == pytest.approx(5.0)
    assert alignment_loss(predicted, target, "mse").item() == pytest.approx((9 + 16) / 4)
    with pytest.raises(ValueError, match="use 'l2' or 'mse'"):
        alignment_loss(predicted, target, "cosine")
    with pytest.raises(ValueError, match="alignment: predicted"):
        alignment_loss(predicted, target[:1])


def test_min_snr_weights_clip_high_snr_only():
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    timesteps = torch.tensor([0, 999])
    weights = min_snr_weights(scheduler, timesteps, gamma=5.0)
    snr = scheduler.alphas_cumprod[timesteps] / (1 - scheduler.alphas_cumprod[timesteps])
    assert snr[0] > 5 and weights[0] == pytest.approx(5 / snr[0].item())  # low noise: down-weighted
    assert snr[1] < 5 and weights[1] == pytest.approx(1.0)  # high noise: kept


def test_terms_per_modality_in_a_mixed_batch(model):
    batch = batch_of([("image", "a red square")], [("audio", "a low hum"), ("image", "a cat")])
    terms = StageLoss(model, alignment_weight=1.0)(batch)
    assert set(terms) == {"loss", "nll", "align/image", "align/audio"}
    expected = terms["nll"] + terms["align/image"] + terms["align/audio"]
    torch.testing.assert_close(terms["loss"], expected)


def test_precomputed_targets_give_the_same_loss_as_on_the_fly(model):
    batch = batch_of([("image", "a red square")], [("image", "a cat"), ("audio", "a low hum")])
    torch.manual_seed(1)
    on_the_fly = StageLoss(model, alignment_weight=1.0).eval()(batch)
    for outputs in batch.outputs:
        for output in outputs:
            output.target = model.decoders.encode_text(output.modality, [output.caption])[0]
    precomputed = StageLoss(model, alignment_weight=1.0).eval()(batch)
    for name in on_the_fly:
        torch.testing.assert_close(precomputed[name], on_the_fly[name])


def test_encoder_side_loss_is_nll_only_and_trains_only_what_is_trainable(model):
    batch = batch_of([("image", "x")])
    terms = StageLoss(model)(batch)
    assert set(terms) == {"loss", "nll"}
    model.zero_grad()
    terms["loss"].backward()
    assert model.input_projector.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("encoder."))
    model.zero_grad()


def test_an_all_bad_batch_gives_a_zero_loss_that_still_backpropagates(model):
    terms = StageLoss(model, alignment_weight=1.0)(Batch([], [], num_tokens=0))
    assert terms["loss"].item() == 0.0 and terms["loss"].requires_grad
    terms["loss"].backward()
    model.zero_grad()


def test_denoising_reaches_only_the_conditioning(model):
    pipeline = model.decoders.pipeline("image")
    conditioning = torch.randn(2, 77, 32, requires_grad=True)
    media = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.manual_seed(0)
    loss = denoising_loss(pipeline, "image", conditioning, media, snr_gamma=5.0)
    loss.backward()
    assert loss.item() > 0 and conditioning.grad.abs().sum() > 0
    assert all(p.grad is None for p in pipeline.unet.parameters())


def test_denoising_term_appears_for_outputs_with_target_media(model):
    batch = batch_of([("image", "a red square")], [("audio", "a low hum")])
    batch.outputs[0][0].media = torch.rand(3, 64, 64) * 2 - 1  # the audio output has none
    terms = StageLoss(model, alignment_weight=1.0, denoising_weight=0.5)(batch)
    assert "denoise/image" in terms and "denoise/audio" not in terms
    torch.testing.assert_close(
        terms["loss"], terms["nll"] + terms["align/image"] + terms["align/audio"] + 0.5 * terms["denoise/image"]
    )


@pytest.mark.parametrize("tied", [True, False])
def test_answer_nll_is_the_next_token_loss_over_the_tokens_the_llm_may_emit(tied):
    from types import SimpleNamespace

    from transformers import LlamaConfig, LlamaForCausalLM

    from nextmm.training.losses import answer_nll, emitted_tokens

    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       num_key_value_heads=2, vocab_size=50, tie_word_embeddings=tied))
    ids = torch.randint(3, 20, (2, 7))
    labels = torch.full_like(ids, -100)
    labels[0, 4:], labels[1, 2:4] = ids[0, 4:], ids[1, 2:4]
    batch = SimpleNamespace(inputs_embeds=llm.get_input_embeddings()(ids), attention_mask=torch.ones_like(ids),
                            labels=labels, position_ids=None)
    full = llm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, labels=labels)
    assert torch.allclose(answer_nll(llm, batch)[0], full.loss, atol=1e-6)  # the head only where labels follow
    assert emitted_tokens(llm) is None
    llm.generation_config.suppress_tokens = list(range(20, 50))  # never in the answers
    vocabulary = emitted_tokens(llm)
    assert vocabulary.tolist() == list(range(20))
    masked = full.logits[:, :-1].clone()
    masked[..., 20:] = -float("inf")
    expected = torch.nn.functional.cross_entropy(masked.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    loss, _ = answer_nll(llm, batch, vocabulary)
    assert torch.allclose(loss, expected, atol=1e-5) and loss < full.loss
    loss.backward()
    assert llm.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="suppress_tokens"):
        answer_nll(llm, batch, torch.arange(10))  # answers hold tokens 10-19
