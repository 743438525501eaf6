"""The paper's metrics, computed by the libraries the field uses; nothing here re-derives a score.

Generation (text -> X), fed one item at a time by ``GenerationScores``:
    fid              torchmetrics FrechetInceptionDistance over the ``image`` network's features (images, video frames)
    fd               the same Frechet distance over the ``audio`` network's embeddings (AudioLDM's FD: PANNs CNN14's
                     2048-d ReLU(fc1) features, the default network)
    inception_score  torchmetrics InceptionScore over the ``audio`` network's class logits, softmaxed (AudioLDM's IS:
                     CNN14's 527 logits before the sigmoid)
    clip_score       torchmetrics CLIPScore: 100 * max(cos(image, caption), 0), averaged
    clipsim          the same over every frame of a video, divided by 100 (CLIPSIM is reported as a cosine)
Captioning (X -> text), by ``caption_scores``: pycocoevalcap's PTB tokenizer, then Bleu(4), Meteor, Cider (CIDEr-D)
and Spice; SPIDEr is the mean of CIDEr-D and SPICE. The tokenizer, METEOR and SPICE run on Java.
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from nextmm.benchmark.features import AudioView
from nextmm.errors import ConfigError

# which feature network each metric looks through (nextmm/conf/benchmark.yaml: features.<key>)
NETWORK = {"fid": "image", "fd": "audio", "inception_score": "audio", "clip_score": "clip", "clipsim": "clip"}
FRECHET = ("fid", "fd")
CAPTION_METRICS = ("bleu_4", "meteor", "cider", "spice", "spider")
JAVA_HINT = "install a Java runtime (Debian: apt-get install default-jre-headless)"


def build_metric(name: str, settings: Mapping, networks: Mapping[str, object]):
    """A torchmetrics metric for a generation metric name and its task settings."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.multimodal.clip_score import CLIPScore

    if name == "fid":
        return FrechetInceptionDistance(feature=networks["image"])
    if name == "fd":
        return FrechetInceptionDistance(feature=AudioView(networks["audio"], "embedding"))
    if name == "inception_score":
        with warnings.catch_warnings():  # torchmetrics' note that IS keeps every item's logits: the protocol's few
            warnings.filterwarnings("ignore", message="Metric `InceptionScore` will save all extracted features")
            return InceptionScore(feature=AudioView(networks["audio"], "logits"),
                                  splits=int(settings.get("splits", 10)))
    if name in ("clip_score", "clipsim"):
        return CLIPScore(model_name_or_path=networks["clip"])
    raise ConfigError(f"unknown generation metric {name!r}: choose from {', '.join(NETWORK)}")


class GenerationScores:
    """Running generation metrics of one task. ``update`` takes one item: ``generated`` and ``real`` batches as the
    networks take them (uint8 (N, 3, H, W) pictures or frames; float (1, S) waveforms) and the caption asked for."""

    def __init__(self, metrics: Mapping[str, Mapping], networks: Mapping[str, object], device: torch.device):
        self.metrics = {name: build_metric(name, settings or {}, networks).to(device)
                        for name, settings in metrics.items()}
        self.device = device

    def update(self, generated: torch.Tensor, real: torch.Tensor | None, caption: str) -> None:
        generated = generated.to(self.device)
        for name, metric in self.metrics.items():
            if name in FRECHET:
                metric.update(real.to(self.device), real=True)
                metric.update(generated, real=False)
            elif name == "inception_score":
                metric.update(generated)
            else:  # CLIP: every picture or frame against the caption
                metric.update(generated, [caption] * len(generated))

    def compute(self) -> dict[str, float | None]:
        scores = {}
        for name, metric in self.metrics.items():
            with warnings.catch_warnings():  # one split has no spread: its std is reported as None
                warnings.filterwarnings("ignore", message=r"std\(\): degrees of freedom")
                value = metric.compute()
            if name == "inception_score":
                spread = float(value[1])
                scores[name], scores[f"{name}_std"] = float(value[0]), None if math.isnan(spread) else spread
            else:
                scores[name] = float(value) / (100 if name == "clipsim" else 1)
        return scores


# ---------------------------------------------------------------------------------------------- captions
def java_missing() -> str | None:
    """Why the Java-based caption metrics cannot run here, or None."""
    return None if shutil.which("java") else f"no `java` on PATH: {JAVA_HINT}"


def spice_missing() -> str | None:
    """Why SPICE cannot run here (its Stanford CoreNLP models are fetched on first use), or None."""
    import pycocoevalcap.spice.spice as spice

    lib = Path(spice.__file__).parent / "lib"
    missing = [name for name in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
               if not (lib / name).is_file()]
    if missing:
        return (f"SPICE needs Stanford CoreNLP 3.6.0 in {lib} ({', '.join(missing)} missing): on a machine with "
                "network run `python -c 'from pycocoevalcap.spice.get_stanford_models import get_stanford_models; "
                "get_stanford_models()'` once")
    return java_missing()


def caption_scores(references: Mapping[str, Sequence[str]], candidates: Mapping[str, str],
                   names: Sequence[str]) -> tuple[dict[str, float | None], dict[str, str]]:
    """Scores of one candidate caption per id against that id's references, as the COCO caption evaluation
    (pycocoevalcap's COCOEvalCap) computes them. Returns (scores, {metric: why it is unavailable}); an
    unavailable metric scores None, never a stand-in number."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.spice.spice import Spice
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    unknown = [n for n in names if n not in CAPTION_METRICS]
    if unknown:
        raise ConfigError(f"unknown caption metrics {unknown}: choose from {', '.join(CAPTION_METRICS)}")
    if set(references) != set(candidates):
        raise ValueError("references and candidates must cover the same ids")
    reason = java_missing()
    if reason:
        raise ConfigError(f"the caption metrics run on Java (the PTB tokenizer, METEOR, SPICE): {reason}")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({key: [{"caption": c} for c in refs] for key, refs in references.items()})
    res = tokenizer.tokenize({key: [{"caption": candidates[key]}] for key in references})
    scores: dict[str, float | None] = {}
    unavailable: dict[str, str] = {}
    if "bleu_4" in names:
        scores["bleu_4"] = float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    if "meteor" in names:
        scores["meteor"] = float(Meteor().compute_score(gts, res)[0])
    if {"cider", "spider"} & set(names):
        scores["cider"] = float(Cider().compute_score(gts, res)[0])
    if {"spice", "spider"} & set(names):
        reason = spice_missing()
        if reason:
            scores["spice"], unavailable["spice"] = None, reason
        else:
            scores["spice"] = float(Spice().compute_score(gts, res)[0])
    if "spider" in names:
        spice = scores["spice"]
        scores["spider"] = None if spice is None else (scores["cider"] + spice) / 2
        if spice is None:
            unavailable["spider"] = f"SPIDEr is the mean of CIDEr and SPICE: {unavailable['spice']}"
    return {name: scores[name] for name in CAPTION_METRICS if name in scores}, unavailable
