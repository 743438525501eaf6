"""The answering path's speed options (llm.attn_implementation, kv_cache, compile, merge_for_inference) and the
last-layer states it collects: each option takes effect, and answers match the plain path (greedy text equal,
signal-token states within 1e-4)."""

import contextlib

import pytest
import torch
from peft import PeftModel
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from transformers import LlamaForCausalLM, StaticCache

from nextmm.errors import ConfigError
from nextmm.inference import conversation
from nextmm.inference.conversation import GenerationSettings, LastLayerStates, generate_turns
from nextmm.inference.prompt import Message
from nextmm.model import NextMM
from nextmm.parts.llm import final_norm, merged_for_inference

STATE_TOLERANCE = 1e-4  # float32 states of the tiny LLM, the option's path against the plain one
PROMPTS = ["surf vlog", "show me a forest"]


def answers(model, monkeypatch, prompts=PROMPTS, **settings):
    """Each prompt's (tokens, states (n, H)) from one batch, render off; an image run asked for, so states exist."""
    kept = []
    collect = conversation._collect

    def keep(*args, **kwargs):
        kept.append(collect(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(conversation, "_collect", keep)
    settings = GenerationSettings().updated(**{"max_new_tokens": 12, "progress": False, "render": False,
                                               "outputs": ["image"], **settings})
    generate_turns(model, [[Message("user", p)] for p in prompts], settings)
    monkeypatch.setattr(conversation, "_collect", collect)
    return [(tokens, torch.stack(states)) for tokens, states, _ in kept]


def assert_same_answers(got, expected):
    for (tokens, states), (tokens_, states_) in zip(got, expected, strict=True):
        assert tokens == tokens_
        torch.testing.assert_close(states, states_, atol=STATE_TOLERANCE, rtol=0)


def spy_generate(model, monkeypatch) -> dict:
    seen = {}
    generate = model.llm.generate

    def spy(**kwargs):
        seen.update(kwargs)
        return generate(**kwargs)

    monkeypatch.setattr(model.llm, "generate", spy)
    return seen


def tiny(*overrides) -> NextMM:
    torch.manual_seed(0)
    return NextMM.from_config("tiny", overrides=list(overrides))


def test_last_layer_states_are_the_last_hidden_states_generate_would_keep(tiny_model):
    embeds = tiny_model.embed_tokens(torch.tensor([[1, 40, 41, 42]]))
    with torch.no_grad(), LastLayerStates(tiny_model.llm) as recorded:
        out = tiny_model.llm.generate(inputs_embeds=embeds, max_new_tokens=5, do_sample=False,
                                      output_hidden_states=True, return_dict_in_generate=True,
                                      pad_token_id=0, eos_token_id=None)
    assert len(recorded.steps) == len(out.hidden_states) == 5
    for step, hidden in zip(recorded.steps, out.hidden_states):
        assert torch.equal(step, hidden[-1][:, -1])  # bit for bit: the same tensor, without every layer's


def test_a_turn_asks_generate_for_no_layers_states(tiny_model, monkeypatch):
    seen = spy_generate(tiny_model, monkeypatch)
    (tokens, states), _ = answers(tiny_model, monkeypatch)
    assert not seen.get("output_hidden_states")
    assert states.shape == (len(tokens), tiny_model.hidden_size)


def test_attn_implementation_is_applied_and_answers_match(tiny_model, monkeypatch):
    assert tiny_model.llm.config._attn_implementation == "sdpa"  # the config's value
    eager = tiny("llm.attn_implementation=eager")
    assert eager.llm.config._attn_implementation == "eager"
    assert_same_answers(answers(eager, monkeypatch), answers(tiny_model, monkeypatch))


def test_static_cache_is_used_and_answers_match(tiny_model, monkeypatch):
    static = tiny("llm.kv_cache=static")
    seen = spy_generate(static, monkeypatch)
    got = answers(static, monkeypatch, prompts=PROMPTS[:1])  # a batch of one continues on the cache in _collect
    assert isinstance(seen["past_key_values"], StaticCache) and seen["disable_compile"]
    assert_same_answers(got, answers(tiny_model, monkeypatch, prompts=PROMPTS[:1]))
    first = seen["past_key_values"]
    assert_same_answers(answers(static, monkeypatch, prompts=PROMPTS[:1]), got)  # on the same cache, emptied
    assert seen["past_key_values"] is first
    assert_same_answers(answers(static, monkeypatch), answers(tiny_model, monkeypatch))


def test_compile_compiles_the_decoding_step_and_answers_match(tiny_model, monkeypatch):
    compiled = tiny("llm.kv_cache=static", "llm.compile=true")
    make_config = conversation.decoding_compile_config

    def eager_backend(cfg, device):  # TorchDynamo traces as with inductor; no C++ build, so the test stays quick
        config = make_config(cfg, device)
        if config is not None:
            config.backend = "eager"
        return config

    monkeypatch.setattr(conversation, "decoding_compile_config", eager_backend)
    base = compiled.llm.get_base_model()
    assert not hasattr(base, "_compiled_call")
    got = answers(compiled, monkeypatch, prompts=PROMPTS[:1])
    assert hasattr(base, "_compiled_call")  # generate ran its decoding steps through torch.compile
    assert_same_answers(got, answers(tiny_model, monkeypatch, prompts=PROMPTS[:1]))


def test_merge_for_inference_folds_lora_and_token_rows_and_answers_match(monkeypatch):
    model = tiny()
    with torch.no_grad():  # a trained adapter: LoRA's B and the new token rows away from their initial values
        for name, param in model.llm.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    unmerged = answers(model, monkeypatch)
    model.llm = merged_for_inference(model.llm)
    assert isinstance(model.llm, LlamaForCausalLM)
    assert not any("lora" in name or "trainable_tokens" in name for name, _ in model.llm.named_parameters())
    assert_same_answers(answers(model, monkeypatch), unmerged)
    with pytest.raises(AssertionError):  # the comparison would see an adapter lost in the merge
        assert_same_answers(answers(tiny(), monkeypatch), unmerged)


def test_merge_for_inference_from_the_config():
    assert isinstance(tiny().llm, PeftModel)
    assert isinstance(tiny("llm.merge_for_inference=true").llm, LlamaForCausalLM)


@pytest.mark.parametrize(("override", "message"), [
    ("llm.attn_implementation=flash", "llm.attn_implementation=flash: give eager, sdpa, flash_attention_2 or null"),
    ("llm.kv_cache=paged", "llm.kv_cache=paged: give dynamic or static"),
    ("llm.compile=yes", "llm.compile=yes: give true or false"),
    ("llm.merge_for_inference=1", "llm.merge_for_inference=1: give true or false"),
    ("llm.compile=true", "llm.compile=true compiles decoding over a cache of fixed shape: set llm.kv_cache=static"),
])
def test_bad_decoding_options_are_one_line_errors(override, message):
    with pytest.raises(ConfigError) as error:
        tiny(override)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_merging_into_quantized_weights_is_refused():
    from nextmm.parts.llm import check_decoding_options

    with pytest.raises(ConfigError, match="set llm.quantize=null or llm.merge_for_inference=false"):
        check_decoding_options({"quantize": "nf4", "merge_for_inference": True})


def test_a_stage_refuses_a_merged_llm():
    from omegaconf import OmegaConf

    from nextmm.training.stage import train_stage

    cfg = OmegaConf.create({"model": {"llm": {"quantize": None, "merge_for_inference": True}}})
    with pytest.raises(ConfigError, match="set model.llm.merge_for_inference=false"):
        train_stage(cfg, "modality_switching", dataset_for=None, loss_for=None)


def test_signal_completion_forces_what_the_run_rules_force(tiny_model):
    """The device-side lookup against nextmm.inference.signals.next_signal_token, over random answers that start
    runs often (first signal tokens favoured), a batch of rows at once."""
    from nextmm.inference.conversation import SignalCompletion
    from nextmm.inference.signals import next_signal_token

    ids, vocab = tiny_model.signal_ids, len(tiny_model.tokenizer)
    processor = SignalCompletion(ids)
    generator = torch.Generator().manual_seed(0)
    answers = torch.zeros(8, 0, dtype=torch.long)
    forced_seen = 0
    for _ in range(60):
        scores = torch.rand(8, vocab, generator=generator)
        scores[:, [run[0] for run in ids.values()]] += 0.97
        scores = processor(answers, scores)
        for row, answer in enumerate(answers.tolist()):
            forced = next_signal_token(answer, ids)
            if forced is not None:
                forced_seen += 1
                assert scores[row].argmax().item() == forced and torch.isinf(scores[row]).sum() == vocab - 1
            else:
                assert not any(torch.isfinite(scores[row, run[1:]]).any() for run in ids.values())
        answers = torch.cat([answers, scores.argmax(dim=1, keepdim=True)], dim=1)
    assert forced_seen > 100


def test_token_rows_are_written_in_for_the_turn_only_and_change_no_bit(tiny_model, monkeypatch):
    """peft rebuilds the embedding and output matrices with the trained token rows at every forward; a turn writes
    them in once instead. Inside the turn the token layers are merged, after it they are not (training never sees
    them merged), the matrices are as before, and tokens and states equal the unmerged path's exactly."""
    layers = [m for m in tiny_model.llm.modules() if isinstance(m, TrainableTokensLayer)]
    assert layers
    weights = [layer.base_layer.weight.detach().clone() for layer in layers]
    merged_while_thinking = []
    norm = final_norm(tiny_model.llm)
    hook = norm.register_forward_hook(lambda *args: merged_while_thinking.append([l.merged for l in layers]))
    try:
        merged = answers(tiny_model, monkeypatch)
    finally:
        hook.remove()
    assert merged_while_thinking and all(all(flags) for flags in merged_while_thinking)
    assert not any(layer.merged for layer in layers)
    for layer, weight in zip(layers, weights):
        assert torch.equal(layer.base_layer.weight, weight)
    monkeypatch.setattr(conversation, "token_rows_written_in", lambda llm: contextlib.nullcontext())
    plain = answers(tiny_model, monkeypatch)
    for (tokens, states), (tokens_, states_) in zip(merged, plain, strict=True):
        assert tokens == tokens_ and torch.equal(states, states_)


def test_suppressed_tokens_are_never_answered_and_masked_as_transformers_masks_them(monkeypatch):
    """generation_config.suppress_tokens through a mask built once per LLM (transformers rebuilds it every step):
    the same scores as transformers' own processor, and a suppressed token never appears in an answer."""
    from transformers.generation.logits_process import SuppressTokensLogitsProcessor

    from nextmm.inference.conversation import SuppressedTokens

    model = tiny()
    plain = answers(model, monkeypatch)
    first = plain[0][0][0]  # the first token of the first answer
    model.llm.generation_config.suppress_tokens = [first, 5, 7]
    suppressed = answers(model, monkeypatch)
    assert all(first not in tokens and 5 not in tokens and 7 not in tokens for tokens, _ in suppressed)
    assert suppressed[0][0] != plain[0][0]
    scores = torch.randn(3, model.llm.get_output_embeddings().weight.shape[0])
    ids = torch.zeros(3, 4, dtype=torch.long)
    ours = SuppressedTokens.for_llm(model.llm)(ids, scores.clone())
    assert torch.equal(ours, SuppressTokensLogitsProcessor([first, 5, 7])(ids, scores.clone()))
    assert SuppressedTokens.for_llm(tiny().llm) is None  # an LLM that suppresses nothing gets no processor
