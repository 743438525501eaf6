"""Batched turns (issue 28, item 2). Run by hand on idle cores; figures go to docs/benchmarks.md with the machine.

    python benchmarks/bench_batch.py [--model toyworld] [--turns 16] [--batches 1 4 16] [--repeats 2]

The same ``--turns`` prompts (every toyworld place's vlog, then single media) answered ``batch`` at a time with
``generate_turns``: one LLM pass and one diffusion batch per modality for each batch. Reported per batch size:
turns per minute (median over repeats, each repeat answering all the prompts) and the median time of one batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nextmm.cli import quiet_libraries
from nextmm.inference.conversation import GenerationSettings, generate_turns
from nextmm.inference.prompt import Message
from nextmm.model import NextMM
from nextmm.toyworld.concepts import CONCEPT_NAMES

EXTRA = ("a picture of the beach", "the sound of rain", "a video of the city at night",
         "what does a forest sound like?", "show me snow on the mountains")


def prompts(count: int) -> list[str]:
    pool = [f"{place} vlog" for place in CONCEPT_NAMES] + list(EXTRA)
    return [pool[i % len(pool)] for i in range(count)]


def bench(model: NextMM, asked: list[str], batch: int, repeats: int) -> dict:
    settings = GenerationSettings(progress=False)
    walls, per_batch = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(asked), batch):
            begin = time.perf_counter()
            generate_turns(model, [[Message("user", p)] for p in asked[first : first + batch]], settings)
            per_batch.append(time.perf_counter() - begin)
        walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    return {"batch": batch, "turns": len(asked), "turns_per_min": round(len(asked) / wall * 60, 2),
            "median_batch_s": round(statistics.median(per_batch), 3), "wall_s": round(wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toyworld")
    parser.add_argument("--turns", type=int, default=16)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = NextMM.from_config(args.model)
    asked = prompts(args.turns)
    generate_turns(model, [[Message("user", p)] for p in asked[:2]], GenerationSettings(progress=False))  # warm up
    results = [bench(model, asked, batch, args.repeats) for batch in args.batches]
    print(json.dumps({"model": args.model, "threads": torch.get_num_threads(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
