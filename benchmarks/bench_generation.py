"""Generation benchmarks (issue 3). Run by hand; figures go to docs/benchmarks.md with the machine.

    python benchmarks/bench_generation.py [--model tiny] [--repeats 5] [--device cpu]

1. decoding: Decoders.render vs the diffusers pipeline called directly with the same conditioning
   (same negative conditioning, steps, sizes and seed); target ratio <= 1.05.
2. kv-cache: LLM decoding of the same number of tokens with use_cache=True vs use_cache=False (the
   original predict.py ran without the cache).
3. end-to-end: the default surf-vlog turn, split by step (load, encode, LLM, each decoder, writing files).
Timings are medians of interleaved repeats, so load from other processes hits both sides alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from nextmm.cli import quiet_libraries
from nextmm.inference.conversation import Conversation
from nextmm.inference.outputs import write_turn
from nextmm.inference.prompt import Message, prompt_segments
from nextmm.modality import MODALITIES
from nextmm.model import NextMM


def median_pair(first, second, repeats: int) -> tuple[float, float]:
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def bench_decoding(model: NextMM, repeats: int, steps: int, guidance: float) -> dict:
    results = {}
    for modality in MODALITIES:
        decoders = model.decoders
        pipe = decoders.pipeline(modality)
        cfg = decoders.cfg[modality]
        conditioning = torch.randn(1, *decoders.conditioning_shape(modality))
        negative = decoders.encode_text(modality, [""])
        sizes = {"image": {"height": cfg.get("height"), "width": cfg.get("width")},
                 "audio": {"audio_length_in_s": cfg.get("audio_seconds")},
                 "video": {"height": cfg.get("height"), "width": cfg.get("width"), "num_frames": cfg.get("num_frames")}}

        def through_nextmm():
            decoders.render(modality, conditioning, negative=negative, num_inference_steps=steps,
                            guidance_scale=guidance, generator=torch.Generator().manual_seed(0), progress=False)

        def direct():
            pipe.set_progress_bar_config(disable=True)
            pipe(prompt_embeds=conditioning, negative_prompt_embeds=negative, num_inference_steps=steps,
                 guidance_scale=guidance, generator=torch.Generator().manual_seed(0),
                 output_type="np" if modality != "image" else "pil", **sizes[modality])

        through_nextmm()  # warm-up both
        direct()
        mine, theirs = median_pair(through_nextmm, direct, repeats)
        results[modality] = {"nextmm_s": round(mine, 4), "diffusers_s": round(theirs, 4), "ratio": round(mine / theirs, 3)}
    return results


def bench_kv_cache(model: NextMM, repeats: int, tokens: int) -> dict:
    """Time the same greedy decode with and without the KV cache; the prompt is the surf-vlog turn."""
    batch = model.embed_segments([prompt_segments([Message("user", "surf vlog")])])

    def run(cache: bool):
        return lambda: model.llm.generate(inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask,
                                          max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                          use_cache=cache, pad_token_id=model.tokenizer.pad_token_id)

    with torch.no_grad():
        run(True)()
        cached, uncached = median_pair(run(True), run(False), repeats)
    return {"tokens": tokens, "cache_s": round(cached, 4), "no_cache_s": round(uncached, 4),
            "speedup": round(uncached / cached, 2)}


def bench_end_to_end(model_name: str, device: str) -> dict:
    start = time.perf_counter()
    model = NextMM.from_config(model_name, device=device)
    load = time.perf_counter() - start
    turn = Conversation(model, progress=False, outputs=list(MODALITIES)).say("surf vlog")
    with tempfile.TemporaryDirectory() as folder:
        result = write_turn(turn, folder, prompt="surf vlog", model=model_name, seed=0,
                            timings_s={"load": load, **turn.timings_s})
        timings = json.loads(result.read_text())["timings_s"]
    timings["total"] = round(sum(timings.values()), 4)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--kv-overrides", nargs="*", default=[],
                        help="model overrides for the KV-cache run only, e.g. a wider LLM: "
                             "llm.architecture.hidden_size=512 llm.architecture.num_hidden_layers=8")
    args = parser.parse_args()
    quiet_libraries()
    model = NextMM.from_config(args.model, device=args.device)
    report = {
        "machine": f"{torch.get_num_threads()} CPU threads" if args.device == "cpu" else torch.cuda.get_device_name(),
        "decoding": bench_decoding(model, args.repeats, args.steps, args.guidance),
        "kv_cache": bench_kv_cache(
            NextMM.from_config(args.model, overrides=args.kv_overrides, device=args.device) if args.kv_overrides else model,
            args.repeats, args.tokens),
        "end_to_end": bench_end_to_end(args.model, args.device),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
