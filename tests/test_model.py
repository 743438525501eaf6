import numpy as np
import pytest
import torch
from PIL import Image

from nextmm.inference.prompt import Media, Message, Text, prompt_segments
from nextmm.modality import MODALITIES, signal_tokens
from nextmm.model import IGNORE_INDEX, MEDIA_POSITION
from nextmm.parts.llm import added_tokens

MEDIA_SHAPES = {"image": (3, 224, 224), "audio": (3, 1, 128, 204), "video": (15, 3, 2, 224, 224)}


def media(modality, seed=0):
    return Media(modality, torch.randn(MEDIA_SHAPES[modality], generator=torch.Generator().manual_seed(seed)))


def test_added_tokens_are_single_tokens(tiny_model):
    tokenizer = tiny_model.tokenizer
    for token in added_tokens(tiny_model.config.signal_tokens):
        assert len(tokenizer(token, add_special_tokens=False).input_ids) == 1, token
    assert tiny_model.llm.get_input_embeddings().weight.shape[0] == len(tokenizer)


@pytest.mark.parametrize("modality", MODALITIES)
def test_each_modality_becomes_one_llm_token(tiny_model, modality):
    data = torch.stack([media(modality, 0).data, media(modality, 1).data])
    with torch.no_grad():
        token = tiny_model.embed_media(modality, data)
        expected = tiny_model.input_projector(tiny_model.encoder(modality, data))  # ImageBind, then the projector
    assert token.shape == (2, 1, tiny_model.hidden_size)
    torch.testing.assert_close(token, expected)
    assert not torch.allclose(token[0], token[1])


def test_several_media_in_one_turn_keep_their_own_tokens(tiny_model):
    segments = prompt_segments([Message("user", "compare", [media("image", 0), media("image", 1), media("audio")])])
    with torch.no_grad():
        batch = tiny_model.embed_segments([segments])
        positions = (batch.token_ids[0] == MEDIA_POSITION).nonzero().flatten()
        assert len(positions) == 3
        tokens = batch.inputs_embeds[0, positions]
        expected = torch.cat([tiny_model.embed_media("image", torch.stack([media("image", 0).data, media("image", 1).data]))[:, 0],
                              tiny_model.embed_media("audio", media("audio").data[None])[:, 0]])
    torch.testing.assert_close(tokens, expected)
    assert not torch.allclose(tokens[0], tokens[1])


def test_batch_padding_labels_and_bos(tiny_model):
    short = [Text("hi ")]
    long = [Text("a longer prompt "), Text("answer", train=True)]
    with torch.no_grad():
        batch = tiny_model.embed_segments([short, long])
    tokenizer = tiny_model.tokenizer
    assert batch.inputs_embeds.shape[:2] == batch.labels.shape == batch.attention_mask.shape
    assert (batch.token_ids[:, 0] == tokenizer.bos_token_id).all()
    n_short = 1 + len(tokenizer("hi ", add_special_tokens=False).input_ids)
    assert batch.attention_mask[0].sum() == n_short
    assert (batch.labels[0] == IGNORE_INDEX).all()
    answer = tokenizer("answer", add_special_tokens=False).input_ids
    assert batch.labels[1][batch.labels[1] != IGNORE_INDEX].tolist() == answer


def test_llm_reads_projected_media_and_signal_states_reach_every_decoder(tiny_model):
    answer = " ".join("".join(signal_tokens(m, tiny_model.config.signal_tokens[m])) for m in MODALITIES)
    messages = [Message("user", "a surf vlog please", [media("video")]), Message("assistant", answer)]
    with torch.no_grad():
        batch = tiny_model.embed_segments([prompt_segments(messages, train_answers=True)])
        (position,) = (batch.token_ids[0] == MEDIA_POSITION).nonzero().flatten().tolist()
        features = tiny_model.encoder("video", media("video").data[None])  # (1, D_enc)
        torch.testing.assert_close(batch.inputs_embeds[0, position], tiny_model.input_projector(features)[0, 0])
        out = tiny_model.llm(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                             labels=batch.labels, output_hidden_states=True)
        # another video changes what the LLM computes from the media token on, and nothing before it (causal)
        other_messages = [Message("user", "a surf vlog please", [media("video", seed=1)]), messages[1]]
        other = tiny_model.embed_segments([prompt_segments(other_messages, train_answers=True)])
        other_logits = tiny_model.llm(inputs_embeds=other.inputs_embeds, attention_mask=other.attention_mask).logits
        torch.testing.assert_close(other_logits[0, :position], out.logits[0, :position])
        assert not torch.allclose(other_logits[0, position:], out.logits[0, position:])
        assert (other_logits[0, position:] - out.logits[0, position:]).abs().amax(-1).min() > 1e-4  # every position
        states = tiny_model.signal_hidden_states(batch.token_ids, out.hidden_states[-1])
        assert set(states) == set(MODALITIES)
        for modality, (rows, hidden) in states.items():
            assert rows == [0]
            assert hidden.shape == (1, tiny_model.config.signal_tokens[modality], tiny_model.hidden_size)
            conditioning = tiny_model.project_signals(modality, hidden)
            assert conditioning.shape == (1, *tiny_model.decoders.conditioning_shape(modality))


def test_decoders_render_projected_conditioning(tiny_model):
    hidden = torch.randn(1, tiny_model.config.signal_tokens["image"], tiny_model.hidden_size)
    with torch.no_grad():
        conditioning = tiny_model.project_signals("image", hidden)
    settings = {"num_inference_steps": 2, "guidance_scale": 1.0, "progress": False}
    (image,) = tiny_model.decoders.render("image", conditioning, generator=torch.Generator().manual_seed(0), **settings)
    (other,) = tiny_model.decoders.render("image", conditioning + 1, generator=torch.Generator().manual_seed(0),
                                          **settings)
    cfg = tiny_model.decoders.cfg["image"]
    assert image.size == (cfg.width, cfg.height) and image.mode == "RGB"
    assert not np.array_equal(np.asarray(image), np.asarray(other))  # the same noise: the conditioning decides


def test_from_config_takes_overrides():
    from nextmm.model import NextMM

    model = NextMM.from_config("tiny", overrides=["llm.architecture.num_hidden_layers=1", "input_projector.kind=mlp"])
    assert model.llm.config.num_hidden_layers == 1
    assert len(model.input_projector.proj) == 3


def same_turn(a, b) -> bool:
    return a.text == b.text and a.outputs == b.outputs and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images + a.audios, b.images + b.audios))


TURN = {"images": [Image.new("RGB", (40, 30), (200, 30, 30))], "outputs": ["image", "audio"], "seed": 3, "max_new_tokens": 6, "num_inference_steps": 2, "progress": False}


def test_offload_keeps_every_part_on_the_cpu_device_and_the_turn_unchanged(tiny_model):
    """memory=offload moves parts between CPU and GPU memory (README "Memory"): on CPU no accelerate hook is
    installed and every part stays where it is. The VAEs decode in slices and tiles (tests/test_memory.py), so the
    pictures may differ where tiles meet; the answer and its media's shapes do not."""
    from nextmm.model import NextMM

    model = NextMM.from_config("tiny", memory="offload")
    turn = model.chat("surf vlog", **TURN)
    assert model.memory.name == "offload" and model.decoders.placement == "offload"
    assert model._encoder_offload is None
    parts = {"encoder": model.encoder, **{m: model.decoders.pipeline(m).unet for m in ("image", "audio")}}
    for name, part in parts.items():
        assert not hasattr(part, "_hf_hook"), name
        assert {p.device.type for p in part.parameters()} == {"cpu"}, name
    assert all(model.decoders.pipeline(m).vae.use_slicing for m in ("image", "audio"))
    resident = tiny_model.chat("surf vlog", **TURN)
    assert (turn.text, turn.outputs) == (resident.text, resident.outputs)
    assert [np.asarray(m).shape for m in turn.images + turn.audios] == [
        np.asarray(m).shape for m in resident.images + resident.audios]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="offload moves parts to a CUDA device")
@pytest.mark.parametrize("memory", ["offload", "sequential"])
def test_offload_on_cuda_keeps_encoder_and_decoders_in_cpu_memory_between_uses(memory):
    from nextmm.model import NextMM

    model = NextMM.from_config("tiny", device="cuda", memory=memory)
    turn = model.chat("surf vlog", **TURN)
    assert model._encoder_offload is not None
    assert {p.device.type for p in model.encoder.parameters()} == {"cpu"}
    for part in (model.decoders.pipeline(m).unet for m in ("image", "audio")):
        # offload: in CPU memory; sequential: accelerate keeps the weights aside and leaves meta tensors in place
        assert {p.device.type for p in part.parameters()} <= {"cpu", "meta"}
    assert next(model.llm.parameters()).device.type == "cuda"
    resident = NextMM.from_config("tiny", device="cuda").chat("surf vlog", **TURN)
    assert turn.text == resident.text and turn.outputs == resident.outputs
