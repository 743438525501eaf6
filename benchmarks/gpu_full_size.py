"""Full-size NExT-GPT on a GPU with random weights: memory and latency of a turn, and a training step.

    python benchmarks/gpu_full_size.py                      # nextgpt_7b on CUDA, fp16, with and without offload
    python benchmarks/gpu_full_size.py --reduced            # the tiny model on CPU (what the tests run)

Nothing is downloaded: every part is built from the architecture in nextmm/conf/ and initialised randomly on
the device. Reported per step of a text -> text + image + audio + video turn: latency and peak memory
(CUDA only), once with everything resident and once with ImageBind and the decoders offloaded to CPU
memory between uses. Then one modality-switching training step (LoRA + projectors + new token rows):
tokens/s and model FLOPs utilisation, counting 2·N·T FLOPs for the forward and 2·N·T for the backward
through the frozen weights (activation gradients only), plus 2·N_trainable·T for the weight gradients.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import time
from pathlib import Path

import torch

from nextmm.cli import quiet_libraries
from nextmm.cli.inspect import stage_parts
from nextmm.config import load_model_config
from nextmm.inference.conversation import Conversation
from nextmm.modality import MODALITIES
from nextmm.model import NextMM
from nextmm.parts.decoders import build_pipeline
from nextmm.training.trainable import set_trainable

# Dense bf16/fp16 tensor throughput, for model FLOPs utilisation.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


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


def build(cfg, device: torch.device, dtype: torch.dtype, offload: bool) -> NextMM:
    """Random weights, initialised on the device itself (CPU init of 10 B parameters takes minutes)."""
    with torch.device(device), default_dtype(dtype):
        model = NextMM.from_config(cfg, device=device, dtype=dtype, memory="offload" if offload else "resident")
        for modality in MODALITIES:
            pipe = build_pipeline(modality, cfg.decoders[modality], dtype=dtype)
            if offload and device.type == "cuda":
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
            model.decoders.use(modality, pipe)
    return model


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
    peak = next((v for k, v in PEAK_FLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)), None)
    return {
        "batch": args.batch, "length": args.length, "step_s": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "trainable_parameters": sum(counts.values()),
        "mfu": None if peak is None else round(flops / seconds / peak, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
    }


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
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.reduced:
        args.model, args.dtype, args.tokens, args.steps, args.frames = "tiny", "float32", 4, 1, 8
        args.batch, args.length, args.train_steps = 2, 16, 1
    quiet_libraries()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.reduced else "cpu")
    dtype = getattr(torch, args.dtype)
    cfg = random_weights_config(args.model)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "model": args.model, "dtype": args.dtype}
    for offload in (False, True):
        start = time.perf_counter()
        model = build(cfg, device, dtype, offload)
        key = "offload" if offload else "resident"
        report[key] = {"build_s": round(time.perf_counter() - start, 1), **bench_turn(model, device, args)}
        if not offload:
            report["training_step"] = bench_training_step(model, device, args)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
