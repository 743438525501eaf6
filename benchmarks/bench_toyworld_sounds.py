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

and how much a place's sounds differ from seed to seed, against how much the world's own sounds of it differ
(tempo, pitch, rhythm): the mean L1 distance between the log-mels of two samples, over every pair of seeds, for
the world's sounds and for the decoder's (`caption`); a ratio near 1 is a decoder that varies as the world does,
near 0 one sound per caption.

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
from nextmm.toyworld.features import band_share
from nextmm.toyworld.render import render_audio, sample_scene

STEPS = ("world", "vocoder", "vae", "caption")


@torch.no_grad()
def measure(decoder: str, seeds: int, model: str | None) -> tuple[dict, dict]:
    """({place: {step: [share per seed]}}, {place: {"world" | "caption": log-mel spread over seeds}})."""
    settings = load_model_config("toyworld").decoders.audio  # the shipped decoder's render settings
    decoders = Decoders({"audio": {**{k: v for k, v in settings.items() if k != "components"}, "path": decoder}})
    pipe, spec = decoders.pipeline("audio"), decoder_media_spec(decoders, "audio")
    rate = spec.sample_rate
    chat = None
    if model:
        from nextmm.model import NextMM

        chat = NextMM.from_config(model)
    shares: dict[str, dict[str, list[float]]] = {}
    mels: dict[str, dict[str, list[torch.Tensor]]] = {c: {"world": [], "caption": []} for c in CONCEPT_NAMES}
    with tempfile.TemporaryDirectory() as scratch:
        for concept in CONCEPT_NAMES:
            band = CONCEPTS[concept].sound.band
            row = shares[concept] = {step: [] for step in (*STEPS, *(["vlog"] if chat else []))}
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
                caption_path = Path(scratch) / f"{concept}_{seed}_caption.wav"
                soundfile.write(caption_path, rendered, rate)
                mels[concept]["world"].append(mel[0, 0])
                mels[concept]["caption"].append(load_decoder_media(spec, caption_path)[0])
                row["world"].append(band_share(world, band, rate))
                row["vocoder"].append(band_share(pipe.vocoder(mel[:, 0]).squeeze().numpy(), band, rate))
                row["vae"].append(band_share(pipe.vocoder(pipe.vae.decode(latents).sample[:, 0]).squeeze().numpy(),
                                             band, rate))
                row["caption"].append(band_share(rendered, band, rate))
                if chat:
                    turn = chat.chat(f"{concept} vlog", seed=seed, progress=False)  # no sound at all counts 0
                    row["vlog"].append(band_share(turn.audios[0], band, turn.sample_rate) if turn.audios else 0.0)
    return shares, {concept: {kind: spread(found) for kind, found in kinds.items()} for concept, kinds in mels.items()}


def spread(mels: list[torch.Tensor]) -> float:
    """The mean L1 distance between two log-mels (T, M), over every pair."""
    pairs = [(a - b).abs().mean() for i, a in enumerate(mels) for b in mels[i + 1:]]
    return float(torch.stack(pairs).mean()) if pairs else float("nan")


def spread_table(spreads: dict[str, dict[str, float]]) -> str:
    lines = ["| place | world's sounds | decoder's | ratio |", "|---|---|---|---|"]
    for concept, row in spreads.items():
        lines.append(f"| {concept} | {row['world']:.2f} | {row['caption']:.2f} | {row['caption'] / row['world']:.2f} |")
    ratios = [row["caption"] / row["world"] for row in spreads.values()]
    lines.append(f"| all (median) | | | {np.median(ratios):.2f} |")
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
    shares, spreads = measure(args.decoder, args.seeds, args.model)
    print(table(shares))
    print()
    print(spread_table(spreads))
    if args.json:
        Path(args.json).write_text(json.dumps({"shares": shares, "spreads": spreads}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
