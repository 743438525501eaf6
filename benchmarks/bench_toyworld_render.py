"""Rendering time of one toyworld sample (its image, 16 frames at 64 px and 2 s of 16 kHz audio), per concept.

    python benchmarks/bench_toyworld_render.py [--samples 20]

Renders `--samples` scenes of each concept in this process (nothing is written) and prints a Markdown table
for docs/benchmarks.md: the median and slowest milliseconds a sample. The world's build
(`python -m nextmm world`) renders each of its scenes so, in `workers` processes, and encodes the files.
"""

from __future__ import annotations

import argparse
import statistics
import time

from nextmm.toyworld.concepts import CONCEPT_NAMES
from nextmm.toyworld.render import render_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="scenes rendered per concept")
    args = parser.parse_args()
    print("| concept | median ms / sample | slowest ms |")
    print("|---|---|---|")
    medians = []
    for concept in CONCEPT_NAMES:
        times = []
        for seed in range(args.samples):
            start = time.perf_counter()
            render_sample(concept, seed)
            times.append((time.perf_counter() - start) * 1000)
        medians.append(statistics.median(times))
        print(f"| {concept} | {medians[-1]:.1f} | {max(times):.1f} |")
    print(f"| all | {statistics.median(medians):.1f} | |")


if __name__ == "__main__":
    main()
