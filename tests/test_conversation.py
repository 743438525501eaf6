import threading

import numpy as np
import pytest
import torch
from PIL import Image

from nextmm.errors import ConfigError, Stopped, UserError
from nextmm.inference.conversation import (
    GenerationSettings,
    SignalCompletion,
    _clean_text,
    _completion,
    generate_turn,
    to_media,
)
from nextmm.inference.prompt import Message
from nextmm.modality import MODALITIES
from nextmm.model import MEDIA_POSITION

FAST = {"max_new_tokens": 6, "num_inference_steps": 2, "progress": False}


def test_signal_completion_forces_the_run_and_bans_out_of_order_tokens(tiny_model):
    ids = tiny_model.signal_ids
    processor = SignalCompletion(ids)
    vocab = len(tiny_model.tokenizer)
    inside = processor(torch.tensor([[5, ids["image"][0]]]), torch.zeros(1, vocab))
    assert inside.argmax().item() == ids["image"][1]
    assert torch.isinf(inside).sum() == vocab - 1
    outside = processor(torch.tensor([[5, 6]]), torch.zeros(1, vocab))
    assert torch.isinf(outside[0, ids["video"][3]]) and not torch.isinf(outside[0, ids["video"][0]])


def test_completion_finishes_a_cut_short_run_and_adds_requested_modalities(tiny_model):
    ids = tiny_model.signal_ids
    assert _completion(tiny_model, [7, *ids["audio"][:3]], set()) == ids["audio"][3:]
    assert _completion(tiny_model, [7, 8], {"video"}) == ids["video"]
    assert _completion(tiny_model, [7, *ids["image"]], {"image"}) == []


def test_a_medium_the_words_claim_is_produced_unless_keep_claims_is_off(tiny_model, monkeypatch):
    """An answer that says "Here is a sound" without the LLM's audio signal tokens gets its audio run appended
    (Turn.forced names it); with keep_claims=False the turn is the LLM's own."""
    plain = tiny_model.chat("surf", render=False, **FAST)
    claimed = [m for m in MODALITIES if m not in plain.signals][:1]
    monkeypatch.setattr("nextmm.inference.conversation.claimed_media", lambda text: claimed)
    kept = tiny_model.chat("surf", render=False, **FAST)
    assert kept.signals == plain.signals + claimed and kept.forced == claimed
    assert kept.text == plain.text
    left = tiny_model.chat("surf", render=False, keep_claims=False, **FAST)
    assert left.signals == plain.signals and left.forced == []
    rendered = tiny_model.chat("surf", **FAST)
    assert [m for m, _ in rendered.outputs][-1:] == claimed and len(rendered.media(claimed[0])) == 1


def test_answer_text_drops_the_runs_and_the_spaces_around_them(tiny_model):
    ids = tiny_model.signal_ids
    tokens = tiny_model.tokenizer("Here is the sea ", add_special_tokens=False).input_ids + ids["image"]
    tokens += tiny_model.tokenizer("  and its sound ", add_special_tokens=False).input_ids + ids["audio"]
    tokens += tiny_model.tokenizer(" .\n### Human: more", add_special_tokens=False).input_ids
    assert _clean_text(tiny_model, tokens) == "Here is the sea and its sound."


def test_requested_outputs_come_back_with_their_shapes(tiny_model):
    turn = tiny_model.chat("surf vlog", outputs=list(MODALITIES), **FAST)
    assert [m for m, _ in turn.outputs] == list(MODALITIES)
    assert isinstance(turn.images[0], Image.Image)
    assert turn.audios[0].dtype == np.float32 and turn.audios[0].ndim == 1
    frames = turn.videos[0]
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3
    for token in ("[IMG0]", "[AUD0]", "[VID0]", "<Img>"):
        assert token not in turn.text
    assert {"encode", "llm", "decode_image", "decode_audio", "decode_video"} <= set(turn.timings_s)


def test_a_stop_event_ends_the_turn_while_it_writes_or_renders(tiny_model, monkeypatch):
    settings = GenerationSettings(outputs=["image"]).updated(**FAST)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped, match="while the LLM wrote"):
        generate_turn(tiny_model, [Message("user", "surf vlog")], settings, stop)
    stop.clear()
    project = tiny_model.project_signals
    monkeypatch.setattr(tiny_model, "project_signals", lambda *a: (stop.set(), project(*a))[1])  # set after the LLM
    with pytest.raises(Stopped, match="render was stopped at step 0"):
        generate_turn(tiny_model, [Message("user", "surf vlog")], settings, stop)


def test_a_batch_shares_one_llm_pass_and_one_render_per_modality(tiny_model, monkeypatch):
    prompts = ["surf vlog", "a beach", "tell me about snow and the mountains"]  # prompts of different lengths
    alone = [tiny_model.chat(p, outputs=["image", "audio"], **FAST) for p in prompts]
    calls = {"generate": [], "render": []}
    generate, render = tiny_model.llm.generate, tiny_model.decoders.render
    monkeypatch.setattr(tiny_model.llm, "generate", lambda **kw: (calls["generate"].append(kw), generate(**kw))[1])
    monkeypatch.setattr(tiny_model.decoders, "render",
                        lambda m, c, **kw: (calls["render"].append((m, c.shape[0])), render(m, c, **kw))[1])
    batch = tiny_model.chat_batch(prompts, outputs=["image", "audio"], **FAST)
    assert len(calls["generate"]) == 1 and calls["generate"][0]["inputs_embeds"].shape[0] == 3
    assert calls["render"] == [("image", 3), ("audio", 3)]
    for single, batched in zip(alone, batch):  # greedy: the same answers, the same media
        assert batched.text == single.text and batched.outputs == single.outputs == [("image", 0), ("audio", 0)]
        np.testing.assert_allclose(np.asarray(batched.images[0], float), np.asarray(single.images[0], float), atol=2)
        np.testing.assert_allclose(batched.audios[0], single.audios[0], atol=1e-3)
    with pytest.raises(UserError, match="prompt 1 of the batch is empty"):
        tiny_model.chat_batch(["hi", " "], **FAST)


def test_same_seed_same_text_and_media(tiny_model):
    a = tiny_model.chat("surf vlog", outputs=["image", "audio"], seed=3, **FAST)
    b = tiny_model.chat("surf vlog", outputs=["image", "audio"], seed=3, **FAST)
    assert a.text == b.text
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert np.array_equal(a.audios[0], b.audios[0])


def test_sampling_depends_on_the_seed(tiny_model):
    texts = {tiny_model.chat("surf", temperature=1.0, seed=s, max_new_tokens=8, progress=False).raw_text
             for s in range(4)}
    assert len(texts) > 1


def test_conversation_keeps_history_and_media(tiny_model, monkeypatch):
    """The second turn's LLM input holds the first turn: its user text, its image's projected token and the answer."""
    batches, llm_inputs = [], []
    embed_segments, generate = tiny_model.embed_segments, tiny_model.llm.generate

    def spy_embed(segments):
        batches.append(embed_segments(segments))
        return batches[-1]

    def spy_generate(**kwargs):
        llm_inputs.append(kwargs["inputs_embeds"])
        return generate(**kwargs)

    monkeypatch.setattr(tiny_model, "embed_segments", spy_embed)
    monkeypatch.setattr(tiny_model.llm, "generate", spy_generate)
    conversation = tiny_model.conversation(**FAST)
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    sound = (np.zeros(16000, dtype=np.float32), 16000)
    first = conversation.say("what is this?", images=[image])
    conversation.say("and now?", audios=[sound])
    answer = first.raw_text.split("###")[0].strip()
    assert answer and len(llm_inputs) == 2

    ids, embeds = batches[1].token_ids[0], llm_inputs[1][0]  # (T,), (T, H): what the LLM read on turn 2
    torch.testing.assert_close(embeds[: llm_inputs[0].shape[1]], llm_inputs[0][0])  # turn 1's prompt, unchanged
    text = tiny_model.tokenizer.decode(ids[ids >= 0], skip_special_tokens=False)
    question_end = text.index("what is this?") + len("what is this?")
    assert text.index(answer, question_end) < text.index("and now?", question_end), text
    media_positions = (ids == MEDIA_POSITION).nonzero().flatten()
    with torch.no_grad():
        expected_media = torch.cat([tiny_model.embed_media("image", to_media("image", image).data[None])[:, 0],
                                    tiny_model.embed_media("audio", to_media("audio", sound).data[None])[:, 0]])
        expected_text = tiny_model.embed_tokens(ids.clamp(min=0))
    torch.testing.assert_close(embeds[media_positions], expected_media)  # the image's token is still there
    is_text = ids != MEDIA_POSITION
    torch.testing.assert_close(embeds[is_text], expected_text[is_text])
    conversation.reset()  # the next turn reads only itself, as a fresh conversation's first turn does
    conversation.say("and now?")
    tiny_model.conversation(**FAST).say("and now?")
    torch.testing.assert_close(llm_inputs[2], llm_inputs[3], rtol=0, atol=0)


def test_empty_prompt_without_media_is_a_user_error(tiny_model):
    with pytest.raises(UserError, match="empty prompt"):
        tiny_model.chat("   ", **FAST)


def test_prompt_longer_than_the_context_is_a_user_error(tiny_model):
    context = tiny_model.llm.config.max_position_embeddings
    with pytest.raises(UserError, match=f"longer than the model's context of {context}"):
        tiny_model.chat("x" * (context + 10), **FAST)


def test_unknown_setting_is_rejected(tiny_model):
    with pytest.raises(TypeError, match="unknown generation settings"):
        tiny_model.chat("hi", max_tokens=3)


def test_render_settings_default_to_the_decoder_config():
    from types import SimpleNamespace

    from nextmm.inference.conversation import decoder_default

    model = SimpleNamespace(decoders=SimpleNamespace(cfg={"image": {"guidance_scale": 3, "num_inference_steps": None},
                                                          "audio": {}}))
    assert decoder_default(model, "image", "guidance_scale") == 3.0
    assert decoder_default(model, "image", "num_inference_steps") == 50  # unset: the pipelines' own default
    assert decoder_default(model, "audio", "guidance_scale") == 7.5


def test_a_guidance_scale_of_zero_renders_with_zero():
    """No silent corrections: 0 means 0 (guidance off), and only None falls back to the decoder's value."""
    from types import SimpleNamespace

    from nextmm.inference.conversation import GenerationSettings, render_settings

    model = SimpleNamespace(decoders=SimpleNamespace(cfg={"image": {"guidance_scale": 3, "num_inference_steps": 9}}))
    zero = GenerationSettings(guidance_scale=0.0)
    assert render_settings(model, "image", zero) == {"num_inference_steps": 9, "guidance_scale": 0.0}
    assert render_settings(model, "image", GenerationSettings())["guidance_scale"] == 3.0


@pytest.mark.parametrize("setting", [{"num_inference_steps": 0}, {"guidance_scale": -1}, {"top_p": 0},
                                     {"max_new_tokens": 2.5}, {"temperature": "hot"}, {"audio_seconds": 0}])
def test_out_of_range_settings_are_errors(setting):
    from nextmm.inference.conversation import GenerationSettings

    name = next(iter(setting))
    with pytest.raises(ConfigError, match=f"^{name}="):
        GenerationSettings().updated(**setting)
