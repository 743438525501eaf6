"""Serving benchmark (issue 26). Run by hand; figures go to docs/benchmarks.md with the machine and its load.

    python benchmarks/bench_serve.py [--model toyworld] [--turns 8] [--clients 1 4 16] [--threads 2]

The toyworld surf-vlog turn (text, image, sound, video, files written) measured two ways:
1. the Python API in this process: generate_turn + write_turn (what the server does per turn), alternating turn
   by turn with one HTTP client, so both sides see the same machine; their p50 ratio is the server's overhead;
2. the HTTP API of `python -m nextmm serve` (a separate process, as deployed) with 4 and 16 concurrent
   clients, each sending "surf vlog" requests with its own seed until ``max(turns, clients)`` are answered.
Reported: requests per minute over the wall time, and p50/p95 latency of one request (queueing included).
The server runs one turn at a time, so more clients raise latency, not throughput: the figures show what the
HTTP layer, JSON and the queue cost on top of the turn. Both sides use ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

from nextmm.cli import quiet_libraries
from nextmm.inference.conversation import GenerationSettings, generate_turn
from nextmm.inference.outputs import write_turn
from nextmm.inference.prompt import Message
from nextmm.model import NextMM

PROMPT = "surf vlog"


def summary(latencies: list[float], wall_s: float) -> dict:
    cuts = statistics.quantiles(latencies, n=20, method="inclusive")  # 5 % steps: cuts[9] = p50, cuts[18] = p95
    return {"requests": len(latencies), "requests_per_min": round(len(latencies) / wall_s * 60, 2),
            "p50_s": round(cuts[9], 3), "p95_s": round(cuts[18], 3), "wall_s": round(wall_s, 2)}


def python_api_turn(model: NextMM, seed: int, folder: Path) -> float:
    """One surf-vlog turn through the Python API, its files written as the server writes them; seconds."""
    begin = time.perf_counter()
    turn = generate_turn(model, [Message("user", PROMPT)], GenerationSettings(progress=False, seed=seed))
    write_turn(turn, folder / f"turn_{seed}", prompt=PROMPT, model="python", seed=seed)
    return time.perf_counter() - begin


def bench_paired(model: NextMM, url: str, model_name: str, turns: int, folder: Path) -> dict:
    """The same turns alternately through the Python API and one HTTP client, so a drift in the machine's speed
    hits both sides alike; the ratio of their medians is the server's overhead."""
    python, http = [], []
    for seed in range(turns):
        python.append(python_api_turn(model, seed, folder))
        http.append(ask(url, model_name, seed))
    sides = {"python_api": summary(python, sum(python)), "http_1_clients": summary(http, sum(http))}
    sides["overhead_ratio_p50"] = round(sides["http_1_clients"]["p50_s"] / sides["python_api"]["p50_s"], 3)
    sides["overhead_ratio_median_of_pairs"] = round(statistics.median(h / p for h, p in zip(http, python)), 3)
    sides["pairs_s"] = [(round(p, 2), round(h, 2)) for p, h in zip(python, http)]
    return sides


def start_server(model_name: str, threads: int, folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen([sys.executable, "-m", "nextmm", "serve", f"model={model_name}", f"port={port}",
                               f"output_dir={folder}", "quiet=true"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            httpx.get(f"{url}/health", timeout=2)
            return server, url
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.5)


def ask(url: str, model_name: str, seed: int) -> float:
    """One surf-vlog request; its latency in seconds."""
    begin = time.perf_counter()
    reply = httpx.post(f"{url}/v1/chat/completions", timeout=600, json={
        "model": model_name, "messages": [{"role": "user", "content": PROMPT}], "seed": seed})
    reply.raise_for_status()
    assert len(reply.json()["choices"][0]["message"]["media"]) == 3, reply.text[:300]
    return time.perf_counter() - begin


def bench_http(url: str, model_name: str, clients: int, turns: int) -> dict:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda seed: ask(url, model_name, seed), range(max(turns, clients))))
    return summary(latencies, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld")
    parser.add_argument("--turns", type=int, default=8, help="turns per measurement (at least one per client)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    quiet_libraries()
    torch.set_num_threads(args.threads)
    results = {"machine": {"cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
                           "load_average_before": os.getloadavg()}}
    with tempfile.TemporaryDirectory() as scratch:
        model = NextMM.from_config(args.model)
        python_api_turn(model, 0, Path(scratch) / "warm")  # loads the decoders
        server, url = start_server(args.model, args.threads, Path(scratch) / "served")
        try:
            ask(url, args.model, 0)  # warm: the decoders load on the first media turn
            results.update(bench_paired(model, url, args.model, args.turns, Path(scratch) / "python"))
            print(json.dumps({k: results[k] for k in ("python_api", "http_1_clients", "overhead_ratio_p50",
                                                      "overhead_ratio_median_of_pairs", "pairs_s")}), flush=True)
            for clients in [c for c in args.clients if c > 1]:
                results[f"http_{clients}_clients"] = bench_http(url, args.model, clients, args.turns)
                print(json.dumps({f"http_{clients}_clients": results[f"http_{clients}_clients"]}), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    results["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
