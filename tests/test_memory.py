"""memory=: where the parts wait during a turn, what each setting is estimated to cost, and memory=auto's choice.

The estimates are of the full-size model's architecture, counted on the meta device; the two GPU figures they
are checked against come from the H100 run in docs/benchmarks.md ("Full size on a GPU")."""

import copy

import numpy as np
import pytest
import torch

from nextmm.config import load_model_config
from nextmm.errors import ConfigError
from nextmm.inference.memory import (
    GiB,
    LADDER,
    MemoryPlan,
    check_memory,
    choose_plan,
    estimate_peak,
    ladder,
    parse_bytes,
    part_sizes,
    plan_memory,
)
from nextmm.parts.decoders import Decoders


@pytest.fixture(scope="module")
def full_size():
    cfg = load_model_config("nextgpt_7b")
    return cfg, part_sizes(cfg)


@pytest.fixture(scope="module")
def peaks(full_size):
    cfg, sizes = full_size
    return {plan: estimate_peak(sizes, plan, cfg.decoders)["turn"] for plan in LADDER}


@pytest.mark.parametrize("value, size", [(12, 12 * GiB), (11.5, int(11.5 * GiB)), ("12GiB", 12 * GiB),
                                         ("800 MiB", 800 * 2**20), ("16GB", 16 * 10**9), ("3", 3 * GiB)])
def test_memory_limit_reads_gib_or_a_size_with_its_unit(value, size):
    assert parse_bytes(value) == size


@pytest.mark.parametrize("memory, limit, message", [
    ("maybe", None, "memory=maybe: give auto, resident, offload, sequential"),
    ("auto", "lots", "memory_limit=lots: give a size such as 12 (GiB), 12GiB or 800MiB"),
    ("auto", -2, "memory_limit=-2: give a size"),
    ("auto", "12 parsecs", "memory_limit=12 parsecs: give a size"),
    ("offload", 12, "memory_limit=12 is the budget of memory=auto: drop it, or set memory=auto"),
])
def test_bad_memory_settings_are_one_line(memory, limit, message):
    with pytest.raises(ConfigError) as error:
        check_memory(memory, limit)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_full_size_weights_match_the_h100_measurement(full_size):
    """Resident, the H100 run held 22.5 GiB before the turn; at the LLM step, 22.7 GiB (32 new tokens)."""
    cfg, sizes = full_size
    resident = estimate_peak(sizes, MemoryPlan("resident"), cfg.decoders)
    assert 22.0 * GiB < resident["encode"] < 23.0 * GiB
    assert sizes.llm_linear == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)  # attention and MLP of every block


def test_the_video_decode_estimate_matches_the_h100_measurement(full_size):
    """Zeroscope at 8 frames of 320 x 576 peaked at 25.3 GiB resident and 16.7 GiB offloaded on the H100."""
    cfg, sizes = full_size
    decoders = copy.deepcopy(cfg.decoders)
    decoders.video.num_frames = 8
    resident = estimate_peak(sizes, MemoryPlan("resident"), decoders)["decode_video"]
    offload_no_slicing = estimate_peak(sizes, MemoryPlan("offload"), decoders)["decode_video"]
    assert abs(resident / GiB - 25.3) < 0.1 * 25.3, resident / GiB
    assert offload_no_slicing < 16.7 * GiB  # the H100 run offloaded without VAE slicing; slicing saves more


def test_each_step_down_the_ladder_needs_less_memory(peaks):
    ordered = [peaks[plan] for plan in LADDER]
    assert ordered == sorted(ordered, reverse=True) and len(set(ordered)) == len(ordered)
    assert peaks[MemoryPlan("resident")] > 24 * GiB  # why NExT-GPT's users ran out of memory on 24 GB cards


@pytest.mark.parametrize("budget_gib, expected", [
    (80, "resident"), (24, "offload"), (12, "offload+int8"), (9, "offload+nf4"), (7, "sequential+nf4")])
def test_auto_takes_the_first_plan_that_fits(peaks, budget_gib, expected):
    plan = choose_plan(peaks, budget_gib * GiB)
    assert plan.name == expected
    assert peaks[plan] * 1.1 <= budget_gib * GiB


def test_a_12_gib_card_gets_a_plan_for_the_full_turn(peaks):
    """The issue's target: a text -> text + image + audio + video turn at the decoders' defaults in 12 GiB."""
    plan = choose_plan(peaks, 12 * GiB)
    assert plan.offloaded and peaks[plan] < 12 * GiB


def test_nothing_fits_is_one_line_naming_the_lightest_plan(peaks):
    with pytest.raises(ConfigError) as error:
        choose_plan(peaks, 4 * GiB)
    assert "even with memory=sequential+nf4 and 4.0 GiB is available" in str(error.value)



def test_without_quantization_the_ladder_ends_with_sequential(full_size):
    """Without bitsandbytes or a pretrained LLM nothing is quantized: resident, offload, then sequential."""
    cfg, sizes = full_size
    plans = ladder(None, can_quantize=False)
    assert [plan.name for plan in plans] == ["resident", "offload", "sequential"]
    peaks = {plan: estimate_peak(sizes, plan, cfg.decoders)["turn"] for plan in plans}
    assert choose_plan(peaks, 17 * GiB) == MemoryPlan("sequential")
    with pytest.raises(ConfigError, match="even with memory=sequential and 12.0 GiB is available"):
        choose_plan(peaks, 12 * GiB)
    assert ladder("nf4") == [MemoryPlan("resident", "nf4"), MemoryPlan("offload", "nf4"), MemoryPlan("sequential", "nf4")]


def test_auto_on_a_gpu_plans_within_the_limit(full_size):
    cfg, _ = full_size
    plan = plan_memory("auto", cfg, torch.device("cuda"), torch.float16, memory_limit="12GiB")
    assert plan == MemoryPlan("offload", "int8")


def test_auto_does_not_quantize_an_llm_that_merges_its_lora(full_size):
    cfg, _ = full_size
    cfg = copy.deepcopy(cfg)
    cfg.llm.merge_for_inference = True
    with pytest.raises(ConfigError, match="even with memory=sequential and"):  # sequential, not sequential+nf4
        plan_memory("auto", cfg, torch.device("cuda"), torch.float16, memory_limit=12)


def test_auto_reads_the_free_gpu_memory(full_size, monkeypatch):
    from nextmm.inference import memory

    cfg, _ = full_size
    monkeypatch.setattr(memory, "free_gpu_memory", lambda device: 40 * GiB)
    assert plan_memory("auto", cfg, torch.device("cuda"), torch.float16) == MemoryPlan("resident")
    monkeypatch.setattr(memory, "free_gpu_memory", lambda device: 20 * GiB)
    assert plan_memory("auto", cfg, torch.device("cuda"), torch.float16) == MemoryPlan("offload")


def test_auto_keeps_a_quantization_the_user_asked_for(full_size):
    cfg, _ = full_size
    cfg = copy.deepcopy(cfg)
    cfg.llm.quantize = "nf4"
    assert plan_memory("auto", cfg, torch.device("cuda"), torch.float16, memory_limit=80) == MemoryPlan("resident", "nf4")
    assert plan_memory("offload", cfg, torch.device("cpu"), torch.float32) == MemoryPlan("offload", "nf4")


def test_auto_on_a_cpu_keeps_everything_in_memory():
    cfg = load_model_config("tiny")
    assert plan_memory("auto", cfg, torch.device("cpu"), torch.float32) == MemoryPlan("resident")
    with pytest.raises(ConfigError, match="memory_limit=12 budgets GPU memory: drop it on device=cpu"):
        plan_memory("auto", cfg, torch.device("cpu"), torch.float32, memory_limit=12)


def test_vae_slicing_decodes_one_image_at_a_time():
    """Slicing bounds the VAE's working memory by one picture: with it, a batch of two decodes in two calls,
    to the same pictures (float32, to rounding)."""
    cfg = load_model_config("tiny").decoders
    conditioning = torch.randn(2, *Decoders(cfg).conditioning_shape("image"), generator=torch.Generator().manual_seed(0))
    pictures, calls = {}, {}
    for slicing in (False, True):
        decoders = Decoders(cfg, placement="offload", vae_slicing=slicing)
        vae = decoders.pipeline("image").vae
        calls[slicing] = 0

        def count(module, args):
            calls[slicing] += 1

        vae.decoder.register_forward_pre_hook(count)
        pictures[slicing] = decoders.render("image", conditioning, num_inference_steps=2, guidance_scale=1.0,
                                            generator=torch.Generator().manual_seed(0), progress=False)
        assert vae.use_slicing is slicing
    assert calls == {False: 1, True: 2}
    for a, b in zip(pictures[False], pictures[True]):
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1


def test_vae_tiling_decodes_a_large_picture_in_tiles():
    cfg = load_model_config("tiny").decoders
    decoders = Decoders(cfg, vae_tiling=True)
    vae = decoders.pipeline("image").vae
    tile = vae.tile_sample_min_size
    calls = []
    vae.decoder.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape))
    conditioning = torch.randn(1, *decoders.conditioning_shape("image"))
    (picture,) = decoders.render("image", conditioning, num_inference_steps=1, guidance_scale=1.0,
                                 height=2 * tile, width=2 * tile, progress=False)
    assert np.asarray(picture).shape == (2 * tile, 2 * tile, 3)
    assert len(calls) > 1  # overlapping tiles, each decoded on its own


def test_a_bad_placement_is_refused():
    with pytest.raises(ConfigError, match="decoders placement 'gpu': give resident, offload, sequential"):
        Decoders(load_model_config("tiny").decoders, placement="gpu")


def test_auto_plans_for_the_turn_s_own_sizes(full_size):
    """Fewer video frames need less memory: in 17.8 GiB, 8 frames fit offloaded, 24 need the LLM in int8 too."""
    cfg, _ = full_size
    frames = {n: plan_memory("auto", cfg, torch.device("cuda"), torch.float16, memory_limit=17.8,
                             sizes={"num_frames": n}) for n in (8, 24)}
    assert frames == {8: MemoryPlan("offload"), 24: MemoryPlan("offload", "int8")}
