"""Training throughput of the three stages on the tiny model, and the gains from precomputed targets and features.

    python benchmarks/bench_stages.py [--steps 60] [--batch-size 4] [--workers 1] [--threads 1] [--rounds 3]

Runs each recipe in this process on generated fixture data (tests/fixtures/data_fixtures.py; media are
read and preprocessed for ImageBind in `--workers` DataLoader processes). Then, alternating for a few rounds,
the decoder side with alignment targets encoded on the fly by the decoders' text encoders and with targets
precomputed by nextmm.data.precompute, and the encoder side with media read and encoded in every step and with
precomputed ImageBind features. Throughput counts the steps after the first few (warm-up). Prints Markdown
tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nextmm.cli import compose_config
from nextmm.data import precompute

ROOT = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 3


def run(stage: str, data_root: Path, out: Path, args, *extra: str) -> dict:
    """Train ``stage`` for args.steps; samples/s and tokens/s over the steps after the warm-up."""
    recipe = importlib.import_module(f"nextmm.recipes.{stage}")
    cfg = compose_config(f"stage/{stage}", [
        f"data.root={data_root}", f"output_dir={out}", f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}", f"data.num_workers={args.workers}", "logging.every=1000",
        f"checkpoint.every={args.steps}", *extra,
    ])
    history = recipe.train(cfg)["history"][WARMUP_STEPS:]
    seconds = sum(args.batch_size / m["samples_per_s"] for m in history)  # no sample is bad in the fixtures
    tokens = sum(m["tokens_per_s"] * args.batch_size / m["samples_per_s"] for m in history)
    return {"samples_per_s": args.batch_size * len(history) / seconds, "tokens_per_s": tokens / seconds}


def alternate(stage: str, data: Path, tmp: Path, args, option: str, folder: Path) -> list[tuple[float, float]]:
    """(samples/s without, with ``option``=folder) per round; alternating, so that a change in the machine's
    load hits both sides alike."""
    pairs = []
    for round_ in range(args.rounds):
        without = run(stage, data, tmp / f"{stage}-without{round_}", args)["samples_per_s"]
        with_ = run(stage, data, tmp / f"{stage}-with{round_}", args, f"{option}={folder}")["samples_per_s"]
        pairs.append((without, with_))
    return pairs


def print_rounds(title: str, without: str, with_: str, pairs: list[tuple[float, float]], seconds: float) -> None:
    print(f"\n| {title} | {without}, samples/s | {with_}, samples/s | ratio |\n|---|---:|---:|---:|")
    for round_, (a, b) in enumerate(pairs, 1):
        print(f"| round {round_} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    print(f"\nmedian ratio {statistics.median(b / a for a, b in pairs):.2f}x; precomputing took {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader processes preprocessing media")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--rounds", type=int, default=3, help="alternating on-the-fly / precomputed decoder-side runs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    spec = importlib.util.spec_from_file_location("data_fixtures", ROOT / "tests" / "fixtures" / "data_fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)  # the test suite's small data set in every format

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = fixtures.make_fixture_data(tmp / "data")
        rows = {
            "encoder_side (pairs: image, video, audio in)": run("encoder_side", data, tmp / "enc", args),
            "decoder_side (pairs: image, video, audio out)": run("decoder_side", data, tmp / "dec", args),
            "modality_switching (all five instruction sets)": run("modality_switching", data, tmp / "ms", args),
        }
        seconds = {}
        for kind in ("targets", "features"):
            started = time.perf_counter()
            precompute.main(compose_config("precompute", [f"data.root={data}", f"output={tmp / kind}", f"kind={kind}",
                                                          f"num_workers={args.workers}"]))
            seconds[kind] = time.perf_counter() - started
        targets = alternate("decoder_side", data, tmp, args, "targets", tmp / "targets")
        features = alternate("encoder_side", data, tmp, args, "features", tmp / "features")

    print(f"\n{args.steps} steps, batch {args.batch_size}, {args.workers} DataLoader worker(s), "
          f"{args.threads} torch thread(s); throughput over the steps after {WARMUP_STEPS} warm-up steps\n")
    print("| stage | samples/s | tokens/s |\n|---|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['samples_per_s']:.1f} | {row['tokens_per_s']:.0f} |")
    print_rounds("decoder side", "targets on the fly", "precomputed targets", targets, seconds["targets"])
    print_rounds("encoder side", "media read and encoded", "precomputed features", features, seconds["features"])

if __name__ == "__main__":
    main()
