"""Whether the toy audio decoder's sounds are the places' sounds: each place's share of energy in its band.

    python benchmarks/bench_toyworld_sounds.py [--decoder nextmm/toyworld/checkpoint/decoders/audio] [--seeds 3]
    python benchmarks/bench_toyworld_sounds.py --model toyworld      # also through the whole model: "<place> vlog"

Every place's sound has at least 70 % of its energy in a band of its own (nextmm/toyworld/concepts.py; the
world's renders have 0.92-1.00). For each place and seed this measures that share along the audio path, to find
where a place's sound is lost:

    world      the world's own sound (render_audio)
    vocoder    the world's sound -> its log-mel (as the VAE's data) -> the vocoder
    vae        the same log-mel through the VAE (encode, decode) -> the vocoder
    caption    the decoder alone: the place's canonical caption through its own text encoder, num_inference_steps
               and guidance as the decoder config says
    vlog       (with --model) the whole model answering "<place> vlog": LLM, output projector, decoder

the share of each step's sounds the world's own features place at their place (nextmm.toyworld.features.PlaceJudge,
what `nextmm eval` reports as world/audio), and how much a place's sounds differ from seed to seed, against how
much the world's own sounds of it differ (tempo, pitch, rhythm), two ways:

    log-mel    the mean L1 distance between the log-mels of two samples, over every pair of seeds
    centroid   the standard deviation over seeds of the spectral centroid, in octaves (pitch and brightness)

each for the world's sounds, their VAE round trips (`vae`: what any UNet on this VAE can give at most) and the
decoder's (`caption`); a ratio near 1 is a decoder that varies as the world does, near 0 one sound per caption.

It prints Markdown tables for docs/toyworld.md (the mean over seeds, seeds apart) and, with --json, the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch

from nextmm.config import load_model_config, package_root
from nextmm.data.decoder_media import decoder_media_spec, load_decoder_media
from nextmm.parts.decoders import Decoders
from nextmm.toyworld import canonical_caption
from nextmm.toyworld.build import derive_seed
from nextmm.toyworld.concepts import CONCEPT_NAMES, CONCEPTS
from nextmm.toyworld.features import PlaceJudge, band_share, spectral_centroid
from nextmm.toyworld.render import render_audio, sample_scene

STEPS = ("world", "vocoder", "vae", "caption")
SPREAD_STEPS = ("world", "vae", "caption")  # the sounds whose seed-to-seed spread is measured


@torch.no_grad()
def measure(decoder: str, seeds: int, model: str | None) -> tuple[dict, dict, dict]:
    """({place: {step: [share per seed]}}, {place: {step: [placed right per seed]}},
    {place: {"log-mel" | "centroid": {spread step: spread over seeds}}})."""
    settings = load_model_config("toyworld").decoders.audio  # the shipped decoder's render settings
    decoders = Decoders({"audio": {**{k: v for k, v in settings.items() if k != "components"}, "path": decoder}})
    pipe, spec = decoders.pipeline("audio"), decoder_media_spec(decoders, "audio")
    rate = spec.sample_rate
    chat = None
    if model:
        from nextmm.model import NextMM

        chat = NextMM.from_config(model)
    judge = PlaceJudge()
    shares: dict[str, dict[str, list[float]]] = {}
    placed: dict[str, dict[str, list[bool]]] = {}
    mels: dict[str, dict[str, list[torch.Tensor]]] = {c: {k: [] for k in SPREAD_STEPS} for c in CONCEPT_NAMES}
    centroids: dict[str, dict[str, list[float]]] = {c: {k: [] for k in SPREAD_STEPS} for c in CONCEPT_NAMES}
    with tempfile.TemporaryDirectory() as scratch:
        for concept in CONCEPT_NAMES:
            band = CONCEPTS[concept].sound.band
            row = shares[concept] = {step: [] for step in (*STEPS, *(["vlog"] if chat else []))}
            right = placed[concept] = {step: [] for step in row}
            for seed in range(seeds):
                world = render_audio(sample_scene(concept, derive_seed(seed, "bench-sounds", concept)))
                path = Path(scratch) / f"{concept}_{seed}.wav"
                soundfile.write(path, world, rate)
                mel = load_decoder_media(spec, path)[None]  # (1, 1, T, M)
                latents = pipe.vae.encode(mel).latent_dist.mode()
                rendered = decoders.render("audio", decoders.encode_text("audio", [canonical_caption(concept, "audio")]),
                                           num_inference_steps=settings.num_inference_steps,
                                           guidance_scale=settings.guidance_scale,
                                           generator=torch.Generator().manual_seed(seed), progress=False)[0]
                sounds = {"world": world, "vocoder": pipe.vocoder(mel[:, 0]).squeeze().numpy(),
                          "vae": pipe.vocoder(pipe.vae.decode(latents).sample[:, 0]).squeeze().numpy(),
                          "caption": rendered}
                if chat:
                    turn = chat.chat(f"{concept} vlog", seed=seed, progress=False)
                    sounds["vlog"] = turn.audios[0] if turn.audios else None  # no sound at all counts 0, misplaced
                for step, sound in sounds.items():
                    row[step].append(band_share(sound, band, rate) if sound is not None else 0.0)
                    right[step].append(sound is not None and judge("audio", sound) == concept)
                for step in SPREAD_STEPS:
                    step_path = Path(scratch) / f"{concept}_{seed}_{step}.wav"
                    soundfile.write(step_path, sounds[step], rate)
                    mels[concept][step].append(load_decoder_media(spec, step_path)[0])
                    centroids[concept][step].append(spectral_centroid(sounds[step], rate))
    spreads = {concept: {"log-mel": {step: spread(found) for step, found in mels[concept].items()},
                         "centroid": {step: float(np.std(found)) for step, found in centroids[concept].items()}}
               for concept in CONCEPT_NAMES}
    return shares, placed, spreads


def spread(mels: list[torch.Tensor]) -> float:
    """The mean L1 distance between two log-mels (T, M), over every pair."""
    pairs = [(a - b).abs().mean() for i, a in enumerate(mels) for b in mels[i + 1:]]
    return float(torch.stack(pairs).mean()) if pairs else float("nan")


def spread_table(spreads: dict[str, dict[str, dict[str, float]]]) -> str:
    """Per place and measure: the world's, the VAE round trips' and the decoder's spread, and the decoder's against
    the world's and the VAE's."""
    head, rule = "| place |", "|---|"
    for measure in ("log-mel", "centroid"):
        head += f" {measure}: world | VAE | decoder | decoder / world | decoder / VAE |"
        rule += "---|" * 5
    lines = [head, rule]
    ratios: dict[str, list[float]] = {}
    for concept, row in spreads.items():
        cells = []
        for measure, found in row.items():
            world, vae, decoder = found["world"], found["vae"], found["caption"]
            ratios.setdefault(f"{measure} world", []).append(decoder / world)
            ratios.setdefault(f"{measure} vae", []).append(decoder / vae)
            cells += [f"{world:.2f}", f"{vae:.2f}", f"{decoder:.2f}", f"{decoder / world:.2f}", f"{decoder / vae:.2f}"]
        lines.append(f"| {concept} | " + " | ".join(cells) + " |")
    median = [f"{np.median(ratios[f'{m} {k}']):.2f}" for m in ("log-mel", "centroid") for k in ("world", "vae")]
    lines.append(f"| all (median) | | | | {median[0]} | {median[1]} | | | | {median[2]} | {median[3]} |")
    return "\n".join(lines)


def placed_table(placed: dict[str, dict[str, list[bool]]]) -> str:
    """The share of each step's sounds that the world's features place at their place, per place and in all."""
    steps = list(next(iter(placed.values())))
    lines = ["| place | " + " | ".join(steps) + " |", "|---|" + "---|" * len(steps)]
    for concept, row in placed.items():
        lines.append(f"| {concept} | " + " | ".join(f"{np.mean(row[s]):.2f}" for s in steps) + " |")
    lines.append("| all | " + " | ".join(f"{np.mean([x for row in placed.values() for x in row[s]]):.2f}"
                                      for s in steps) + " |")
    return "\n".join(lines)


def table(shares: dict[str, dict[str, list[float]]]) -> str:
    steps = list(next(iter(shares.values())))
    lines = ["| place | band (Hz) | " + " | ".join(steps) + " |", "|---|---|" + "---|" * len(steps)]
    for concept, row in shares.items():
        lo, hi = CONCEPTS[concept].sound.band
        cells = [f"{np.mean(v):.2f} ({' / '.join(f'{x:.2f}' for x in v)})" for v in row.values()]
        lines.append(f"| {concept} | {lo:.0f}-{hi:.0f} | " + " | ".join(cells) + " |")
    met = {step: sum(np.mean(row[step]) >= 0.7 for row in shares.values()) for step in steps}
    lines.append("| places >= 0.7 | | " + " | ".join(f"{met[s]} of {len(shares)}" for s in steps) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", default=str(package_root() / "toyworld" / "checkpoint" / "decoders" / "audio"),
                        help="an audio decoder folder (a diffusers AudioLDM pipeline)")
    parser.add_argument("--seeds", type=int, default=3, help="samples per place (and seeds compared for the spread)")
    parser.add_argument("--model", default=None, help="also answer '<place> vlog' with this model (e.g. toyworld)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shares, placed, spreads = measure(args.decoder, args.seeds, args.model)
    print(table(shares))
    print()
    print(placed_table(placed))
    print()
    print(spread_table(spreads))
    if args.json:
        figures = {"shares": shares, "placed": placed, "spreads": spreads}
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
