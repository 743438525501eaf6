"""Full-size NExT-GPT on a GPU with random weights: memory and latency of a turn, LLM decoding, batched turns and a
training step.

    python benchmarks/gpu_full_size.py                      # nextgpt_7b on CUDA, fp16, under every memory= setting
    python benchmarks/gpu_full_size.py --reduced            # the tiny model on CPU (what the tests run)

Nothing is downloaded: every part is built from the architecture in nextmm/conf/ and initialised randomly on
the device. Reported per step of a text -> text + image + audio + video turn: latency and peak memory
(CUDA only), under each memory= setting (--memory; nextmm.inference.memory), beside the planner's estimate; the
quantized settings load a random LLM saved to a temporary folder, as bitsandbytes quantizes weights on loading.
Then one modality-switching training step (LoRA + projectors + new token rows):
tokens/s and model FLOPs utilisation, counting 2·N·T FLOPs for the forward and 2·N·T for the backward
through the frozen weights (activation gradients only), plus 2·N_trainable·T for the weight gradients. First on
--batch rows of --length random tokens through the LLM alone; then as a stage runs it (``stage3_mixed``): StageLoss
on --mixed-batch stage-3 conversations whose lengths are drawn uniformly from --mixed-shortest to --mixed-length
tokens, right-padded and packed (train.pack_sequences), with torch's default and its fused AdamW (optimizer.fused),
the LLM and the trained parts in float32 under bf16 autocast where the device has bf16 (train.mixed_precision=bf16),
as a stage builds them; tokens/s and MFU over the real (non-pad) tokens.

Decoding: tokens/s of the LLM step of a batch-1 turn forced to --decode-tokens new tokens (128; the turn-end stop and
EOS are held off), for each decoding option (DECODE_OPTIONS), against the bandwidth bound: a decoding step reads every
LLM weight once, so at most bandwidth / weight bytes tokens/s (BANDWIDTH, or --bandwidth). Batched turns: turns per
minute through generate_turns at --batch-sizes, every answer rendering the --batch-outputs media at --steps.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import itertools
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    StoppingCriteriaList,
    StopStringCriteria,
)

from nextmm.cli import quiet_libraries
from nextmm.cli.inspect import stage_parts
from nextmm.config import load_model_config
from nextmm.data import Batch, Output
from nextmm.inference.conversation import Conversation, GenerationSettings, generate_turns
from nextmm.inference.memory import LADDER, GiB, MemoryPlan, estimate_peak, part_sizes
from nextmm.inference.prompt import Media, Message, prompt_segments
from nextmm.modality import MODALITIES, signal_tokens
from nextmm.model import NextMM
from nextmm.parts.decoders import build_pipeline
from nextmm.parts.llm import is_quantized, merged_for_inference
from nextmm.training.losses import StageLoss
from nextmm.training.optimization import build_optimizer
from nextmm.training.trainable import set_trainable

# Dense bf16/fp16 tensor throughput, for model FLOPs utilisation.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
# Memory bandwidth in bytes/s, for decoding's bound: (words every one of which the device name holds, bandwidth).
BANDWIDTH = [(("H200",), 4.8e12), (("H100", "HBM3"), 3.35e12), (("A100", "80GB"), 2.0e12)]  # H100 SXM: HBM3
# Decoding options: what each sets of model.config.llm, and whether generate also keeps every layer's states at every
# step (the answering path before issue 28: output_hidden_states=True).
DECODE_OPTIONS = {
    "all_layers_states": ({}, True),
    "last_layer_states": ({}, False),
    "static_cache_compile": ({"kv_cache": "static", "compile": True}, False),
    "merged": ({"merge_for_inference": True}, False),
    "merged_static_cache_compile": ({"merge_for_inference": True, "kv_cache": "static", "compile": True}, False),
}
WORDS = ("the", "a", "picture", "of", "sea", "sky", "with", "blue", "light", "waves", "over", "sand", "and", "birds")
BATCH_PROMPTS = ("surf vlog", "a picture of the beach", "the sound of rain", "a video of the city at night",
                 "show me a forest", "let me hear the sea", "snow on the mountains", "a desert at noon")


def random_weights_config(name: str):
    """The model config with every weights path removed, so each part is built randomly."""
    cfg = load_model_config(name)
    cfg.llm.path = cfg.llm.tokenizer = cfg.encoder.checkpoint = cfg.trained = None
    for modality in MODALITIES:
        cfg.decoders[modality].path = None
    return cfg


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build(cfg, device: torch.device, dtype: torch.dtype, plan: MemoryPlan) -> NextMM:
    """Random weights, initialised on the device itself (CPU init of 10 B parameters takes minutes), placed as
    ``plan`` says (a quantized plan loads the LLM from ``cfg.llm.path``: see saved_random_llm)."""
    with torch.device(device), default_dtype(dtype):
        model = NextMM.from_config(cfg, device=device, dtype=dtype, memory=plan)
        for modality in MODALITIES:  # built here on the device; use() offloads them as the plan says
            model.decoders.use(modality, build_pipeline(modality, cfg.decoders[modality], dtype=dtype))
    return model


def saved_random_llm(cfg, device: torch.device, dtype: torch.dtype, folder: Path) -> Path:
    """The LLM's architecture with random weights, saved as a transformers folder (the format Vicuna comes in), for
    the quantized settings: bitsandbytes quantizes weights as they load."""
    with torch.device(device), default_dtype(dtype):
        llm = LlamaForCausalLM(LlamaConfig(**OmegaConf.to_container(cfg.llm.architecture)))
    llm.save_pretrained(folder)
    del llm
    return folder


class StepMeter:
    """Wraps methods so each call records its latency and the peak memory it reached."""

    def __init__(self, device: torch.device):
        self.device, self.steps = device, {}

    def wrap(self, obj, method: str, name_of=lambda *a, **k: None):
        original = getattr(obj, method)

        @functools.wraps(original)
        def measured(*args, **kwargs):
            name = name_of(*args, **kwargs) or method
            self._sync()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            start = time.perf_counter()
            result = original(*args, **kwargs)
            self._sync()
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None
            self.steps[name] = {"latency_s": round(time.perf_counter() - start, 3),
                                "peak_gib": None if peak is None else round(peak, 2)}
            return result

        setattr(obj, method, measured)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def bench_turn(model: NextMM, device: torch.device, args) -> dict:
    meter = StepMeter(device)
    meter.wrap(model, "embed_segments", lambda *a, **k: "encode")
    meter.wrap(model.llm, "generate", lambda *a, **k: "llm")
    meter.wrap(model.decoders, "render", lambda modality, *a, **k: f"decode_{modality}")
    conversation = Conversation(model, progress=False, outputs=list(MODALITIES), max_new_tokens=args.tokens,
                                num_inference_steps=args.steps, num_frames=args.frames)
    conversation.say("surf vlog")  # warm-up: kernels, lazy state
    conversation.reset()
    turn = conversation.say("surf vlog")
    total_peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"steps": meter.steps, "turn_s": round(sum(turn.timings_s.values()), 3), "outputs": turn.outputs,
            "resident_gib": None if total_peak is None else round(torch.cuda.memory_allocated(device) / 2**30, 2)}


def bench_training_step(model: NextMM, device: torch.device, args) -> dict:
    """One modality-switching step on random text: LoRA, projectors and new token rows learn."""
    counts = set_trainable(model, stage_parts("modality_switching"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    vocab = model.llm.config.vocab_size
    ids = torch.randint(3, vocab, (args.batch, args.length), device=device)
    model.train()

    def step():
        out = model.llm(input_ids=ids, labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - start) / args.train_steps
    model.eval()
    tokens = args.batch * args.length
    llm_params = sum(p.numel() for p in model.llm.parameters())
    llm_trainable = counts.get("lora", 0) + counts.get("new_tokens", 0)
    flops = (4 * llm_params + 2 * llm_trainable) * tokens
    peak = peak_flops(device)
    report = {
        "batch": args.batch, "length": args.length, "step_s": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "trainable_parameters": sum(counts.values()),
        "mfu": None if peak is None else round(flops / seconds / peak, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }
    report["stage3_mixed"] = bench_stage3_step(model, device, args, llm_params, llm_trainable)
    return report


def peak_flops(device: torch.device) -> float | None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def stage3_batch(model: NextMM, count: int, shortest: int, longest: int, seed: int = 0) -> Batch:
    """``count`` stage-3 conversations, each as long as a draw from uniform[shortest, longest] tokens allows (at least
    the template's own length): an image question (its ImageBind vector given, as with precomputed features) and a
    text answer; every other answer also produces an image, its signal tokens aligned to a random precomputed
    target, so both projectors, LoRA and the new token rows all train."""
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    run = "".join(signal_tokens("image", model.config.signal_tokens["image"]))
    shape = model.decoders.conditioning_shape("image")
    segments, outputs, total = [], [], 0
    for index in range(count):
        wanted, produces = rng.randint(shortest, longest), index % 2 == 1
        medium = Media("image", torch.randn(model.encoder.embed_dim, generator=generator), encoded=True)
        ending = f" {run}" if produces else ""
        low, high = 0, wanted  # the most answer words whose sample fits `wanted` tokens
        while low < high:
            middle = (low + high + 1) // 2
            fits = len(model.encode(image_question(model, medium, index, middle, ending))[0]) <= wanted
            low, high = (middle, high) if fits else (low, middle - 1)
        segments.append(image_question(model, medium, index, low, ending))
        outputs.append([Output("image", "a picture", target=torch.randn(shape, generator=generator))] if produces
                       else [])
        total += len(model.encode(segments[-1])[0])
    return Batch(segments, outputs, num_tokens=total)


def image_question(model: NextMM, medium: Media, index: int, words: int, ending: str) -> list:
    """The segments of a question about ``medium`` answered by ``words`` words (from the index-th of WORDS on)."""
    answer = " ".join(WORDS[(index + i) % len(WORDS)] for i in range(words)) + ending
    messages = [Message("user", "Describe this picture.", [medium]), Message("assistant", answer)]
    return prompt_segments(messages, train_answers=True, prompt_format=model.prompt_format)


def bench_stage3_step(model: NextMM, device: torch.device, args, llm_params: int, llm_trainable: int) -> dict:
    """The modality-switching step as a stage runs it (StageLoss, gradient clipping, AdamW) on a batch of mixed
    lengths: padded and packed, each with torch's default and its fused AdamW, every case from the same weights."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    for part in (model.llm, model.input_projector, model.output_projectors):
        part.float()  # a stage builds the model in float32; bf16 comes from autocast (accelerate's mixed precision)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    start_weights = {name: p.detach().clone() for name, p in trainable.items()}
    batch = stage3_batch(model, args.mixed_batch, args.mixed_shortest, args.mixed_length)
    lengths = [len(model.encode(sample)[0]) for sample in batch.segments]
    shapes = []
    hook = model.llm.register_forward_pre_hook(
        lambda module, a, kwargs: shapes.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True)
    peak = peak_flops(device)
    flops = (4 * llm_params + 2 * llm_trainable) * batch.num_tokens  # real tokens only
    report = {"samples": len(lengths), "length_distribution": f"uniform {args.mixed_shortest}-{args.mixed_length} tokens",
              "sample_tokens": lengths, "real_tokens": batch.num_tokens, "mixed_precision": "bf16" if bf16 else "no",
              "train_steps": args.train_steps, "cases": {}}
    try:
        for pack, fused in itertools.product((False, True), (False, True)):
            for name, p in trainable.items():
                p.data.copy_(start_weights[name])
            loss = StageLoss(model, alignment_weight=1.0, pack=pack, pack_length=args.mixed_length if pack else None)
            optimizer = build_optimizer(model, {"lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0,
                                                "fused": fused})
            autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
            model.eval()
            with torch.no_grad(), autocast:
                start_loss = float(loss(batch)["loss"])  # without dropout: the same for every case
            model.train()
            train_step(loss, batch, optimizer, autocast)  # warm-up
            synchronize(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            shapes.clear()
            began = time.perf_counter()
            for _ in range(args.train_steps):
                train_step(loss, batch, optimizer, autocast)
            synchronize(device)
            seconds = (time.perf_counter() - began) / args.train_steps
            rows, row_length = shapes[-1]
            report["cases"][f"{'packed' if pack else 'padded'}_{'fused' if fused else 'unfused'}"] = {
                "rows": rows, "row_length": row_length, "tokens_processed": rows * row_length,
                "step_s": round(seconds, 4), "real_tokens_per_s": round(batch.num_tokens / seconds, 1),
                "mfu": None if peak is None else round(flops / seconds / peak, 4),
                "optimizer_fused": bool(optimizer.defaults["fused"]), "start_loss": round(start_loss, 5),
                "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
            }
    finally:
        hook.remove()
        model.eval()
    return report


def train_step(loss: StageLoss, batch: Batch, optimizer: torch.optim.Optimizer, autocast) -> None:
    """A step as the training loop takes it: forward (under ``autocast``), backward, gradients clipped to 1, AdamW."""
    with autocast:
        terms = loss(batch)
    terms["loss"].backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_bandwidth(device: torch.device, override: float | None) -> float | None:
    """Bytes/s the device's memory moves: ``override``, else BANDWIDTH's entry for the device's name, else None."""
    if override is not None:
        return override
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return next((rate for words, rate in BANDWIDTH if all(w in name for w in words)), None)


@contextlib.contextmanager
def forced_length(model: NextMM, tokens: int, all_layers: bool, seen: list):
    """generate as a turn calls it, but writing ``tokens`` new tokens whatever it writes (EOS held off by
    min_new_tokens, the turn-end stop dropped); ``all_layers`` also keeps every layer's states at every step, as
    the answering path did before. The number of new tokens of each call goes to ``seen``."""
    generate = model.llm.generate

    def forced(**kwargs):
        kwargs["min_new_tokens"] = kwargs["max_new_tokens"] = tokens
        kwargs["stopping_criteria"] = StoppingCriteriaList(
            [c for c in kwargs["stopping_criteria"] if not isinstance(c, StopStringCriteria)])
        out = generate(**kwargs, **({"output_hidden_states": True} if all_layers else {}))
        seen.append(out.sequences.shape[1])  # with inputs_embeds, sequences hold the new tokens only
        return out

    model.llm.generate = forced
    try:
        yield
    finally:
        del model.llm.generate  # the instance attribute goes; the method shows again


@contextlib.contextmanager
def decode_option(model: NextMM, settings: dict):
    """The model answering with ``settings`` of model.config.llm; a merge is made on a copy of the LLM, kept for
    the option's runs only (the model keeps its adapter for the other sections)."""
    llm_cfg, llm = model.config.llm, model.llm
    before = {key: llm_cfg.get(key) for key in settings}
    for key, value in settings.items():
        llm_cfg[key] = value
    if settings.get("merge_for_inference"):
        model.llm = merged_for_inference(copy.deepcopy(llm))
        # a deep copy keeps the compiled forward of an earlier option, which still calls the unmerged LLM
        vars(model.llm).pop("_compiled_call", None)
    try:
        yield
    finally:
        model.llm = llm
        for key, value in before.items():
            llm_cfg[key] = value


def bench_decoding(model: NextMM, device: torch.device, args) -> dict:
    """Batch-1 decoding of ``args.decode_tokens`` tokens for each decoding option: tokens/s (median of
    ``args.decode_repeats`` runs after one warm-up, which also compiles) against the bandwidth bound."""
    weight_bytes = sum(p.numel() * p.element_size() for p in model.llm.parameters())
    bandwidth = device_bandwidth(device, args.bandwidth)
    bound = None if bandwidth is None else bandwidth / weight_bytes
    settings = GenerationSettings(progress=False, render=False, max_new_tokens=args.decode_tokens)
    conversation = [[Message("user", "surf vlog")]]
    report = {"tokens": args.decode_tokens, "batch": 1, "llm_weight_bytes": weight_bytes, "bandwidth_bytes_per_s":
              bandwidth, "bound_tokens_per_s": None if bound is None else round(bound, 1), "options": {}}
    for name in args.decode_options:
        changes, all_layers = DECODE_OPTIONS[name]
        seen: list[int] = []
        with decode_option(model, changes), forced_length(model, args.decode_tokens, all_layers, seen):
            start = time.perf_counter()
            generate_turns(model, conversation, settings)  # warm-up (and compilation)
            warm_up = time.perf_counter() - start
            seconds = []
            for _ in range(args.decode_repeats):
                turn = generate_turns(model, conversation, settings)[0]
                seconds.append(turn.timings_s["llm"])
        if set(seen) != {args.decode_tokens}:
            raise RuntimeError(f"{name}: generate wrote {seen} tokens, not {args.decode_tokens}")
        rate = args.decode_tokens / statistics.median(seconds)
        report["options"][name] = {"llm_s": round(statistics.median(seconds), 4), "tokens_per_s": round(rate, 2),
                                   "fraction_of_bound": None if bound is None else round(rate / bound, 4),
                                   "warm_up_s": round(warm_up, 2)}
    return report


def bench_batch_throughput(model: NextMM, args) -> dict:
    """Turns per minute through generate_turns at each of ``args.batch_sizes``: one warm-up batch, then
    ``args.batch_repeats`` timed batches, every answer rendering ``args.batch_outputs`` at ``args.steps``."""
    settings = GenerationSettings(progress=False, max_new_tokens=args.tokens, outputs=list(args.batch_outputs),
                                  num_inference_steps=args.steps, num_frames=args.frames)
    report = {"max_new_tokens": args.tokens, "outputs": list(args.batch_outputs), "num_inference_steps": args.steps,
              "num_frames": args.frames, "sizes": {}}
    for size in args.batch_sizes:
        batch = [[Message("user", BATCH_PROMPTS[i % len(BATCH_PROMPTS)])] for i in range(size)]
        generate_turns(model, batch, settings)  # warm-up: this batch size's kernels and memory
        seconds = []
        for _ in range(args.batch_repeats):
            start = time.perf_counter()
            turns = generate_turns(model, batch, settings)
            seconds.append(time.perf_counter() - start)
            if any(sorted(m for m, _ in t.outputs) != sorted(args.batch_outputs) for t in turns):
                raise RuntimeError(f"batch {size}: an answer lacks some of {args.batch_outputs}")
        report["sizes"][str(size)] = {"batch_s": round(statistics.median(seconds), 3),
                                      "turns_per_min": round(size / statistics.median(seconds) * 60, 1)}
    return report


def bench_memory_settings(cfg, device: torch.device, dtype: torch.dtype, args, resident: dict) -> dict:
    """Each ``memory=`` setting of ``args.memory`` (nextmm.inference.memory.LADDER's names): the turn of bench_turn,
    its measured peak (the largest step's, CUDA only) beside the planner's estimate for the run's sizes, and the
    build time. ``resident``: the resident setting's turn, measured already."""
    sizes = part_sizes(cfg)
    decoders = copy.deepcopy(cfg.decoders)
    decoders.video.num_frames = args.frames
    element_bytes = torch.tensor([], dtype=dtype).element_size()
    plans = {plan.name: plan for plan in LADDER}
    report = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.memory:
            plan = plans[name]
            if plan.name == "resident":
                turn = {**resident, "llm_quantized": False}
            else:
                plan_cfg = copy.deepcopy(cfg)
                if plan.quantize is not None:
                    folder = Path(scratch) / "llm"
                    if not folder.is_dir():
                        saved_random_llm(cfg, device, dtype, folder)
                    plan_cfg.llm.path = str(folder)
                start = time.perf_counter()
                model = build(plan_cfg, device, dtype, plan)
                turn = {"build_s": round(time.perf_counter() - start, 1), **bench_turn(model, device, args),
                        "llm_quantized": is_quantized(model.llm)}
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            peaks = [step["peak_gib"] for step in turn["steps"].values() if step["peak_gib"] is not None]
            estimate = estimate_peak(sizes, plan, decoders, element_bytes=element_bytes)["turn"] / GiB
            report[name] = {**turn, "measured_peak_gib": max(peaks) if peaks else None,
                            "estimated_peak_gib": round(estimate, 4)}
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reduced", action="store_true", help="tiny model on CPU, small sizes (for tests)")
    parser.add_argument("--model", default="nextgpt_7b")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--tokens", type=int, default=32, help="new LLM tokens per turn")
    parser.add_argument("--steps", type=int, default=25, help="diffusion steps per decoder")
    parser.add_argument("--frames", type=int, default=16, help="video frames")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--mixed-batch", type=int, default=8, help="samples of the stage-3 step of mixed lengths")
    parser.add_argument("--mixed-shortest", type=int, default=64, help="its samples' fewest tokens")
    parser.add_argument("--mixed-length", type=int, default=512, help="its samples' most tokens, and the packed rows'")
    parser.add_argument("--decode-tokens", type=int, default=128, help="new tokens of the decoding runs (forced)")
    parser.add_argument("--decode-repeats", type=int, default=3)
    parser.add_argument("--decode-options", nargs="+", default=list(DECODE_OPTIONS), choices=list(DECODE_OPTIONS))
    parser.add_argument("--bandwidth", type=float, help="the device's memory bandwidth in bytes/s (default: BANDWIDTH)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch-repeats", type=int, default=2)
    parser.add_argument("--batch-outputs", nargs="+", default=["image"], choices=list(MODALITIES))
    parser.add_argument("--memory", nargs="+", default=[plan.name for plan in LADDER],
                        choices=[plan.name for plan in LADDER], help="the memory= settings to measure a turn under")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.reduced:
        args.model, args.dtype, args.tokens, args.steps, args.frames = "tiny", "float32", 4, 1, 8
        args.batch, args.length, args.train_steps = 2, 16, 1
        args.mixed_batch, args.mixed_shortest, args.mixed_length = 6, 60, 240  # the template alone is ~55 tokens
        args.decode_tokens, args.decode_repeats, args.batch_sizes, args.batch_repeats = 16, 1, [1, 4], 1
    quiet_libraries()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.reduced else "cpu")
    dtype = getattr(torch, args.dtype)
    cfg = random_weights_config(args.model)
    if args.reduced:  # bitsandbytes' CPU 4-bit kernel takes widths in blocks of 64, as Vicuna's are
        cfg.llm.architecture.intermediate_size = 128
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "model": args.model, "dtype": args.dtype}
    start = time.perf_counter()
    model = build(cfg, device, dtype, MemoryPlan("resident"))
    resident = {"build_s": round(time.perf_counter() - start, 1), **bench_turn(model, device, args)}
    report["decoding"] = bench_decoding(model, device, args)
    report["batch_throughput"] = bench_batch_throughput(model, args)
    report["training_step"] = bench_training_step(model, device, args)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    report["memory_settings"] = bench_memory_settings(cfg, device, dtype, args, resident)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
