"""``python -m nextmm eval model=toyworld``: the toyworld evaluation, printed as one JSON object.

Five measurements on the held-out part of a toyworld (``eval/`` of a built world, docs/toyworld.md):

    retrieval        the encoder alone: concept R@1 text <-> image, audio, video over the held-out scenes
    captioning       X -> text: a held-out question about a held-out medium; right when the answer names its concept
    modality_switch  a held-out prompt; right when the answer asks for exactly the expected set of media
    text_to_x        a held-out request with its medium forced; right when the encoder puts the rendered medium
                     nearest to its own concept's canonical caption, among every concept's ("encoder"), and when
                     the world's own features (colours, band energies) place it there ("world")
    people           requests and questions in people's own words (nextmm/toyworld/people_prompts.jsonl, written
                     apart from the world's grammar): the right media, of the right place by the world's features;
                     X -> text, X -> Y, a vlog of every place, things outside the world; and how often an answer
                     claims a medium ("Here is a sound ...") that the LLM did not produce

Captioning and modality switching stop after the LLM (``render=False``): no diffusion runs for them. With
``data_root=null`` the held-out set is first rendered into a temporary folder, from the seed and counts of the
shipped model's world, so the command needs no data. The measuring functions take anything with the model's
``chat`` (and ``encoder``), so tests drive them with stubs; the scoring functions take plain values.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm

from nextmm.checks import check, number, whole
from nextmm.errors import ConfigError
from nextmm.inference.claims import claimed_media
from nextmm.inference.memory import check_memory
from nextmm.modality import MODALITIES
from nextmm.toyworld import concept_of, concepts_in, wordings
from nextmm.toyworld import language as lang
from nextmm.toyworld.features import PlaceJudge
from nextmm.training.contrastive import retrieval_at_1

log = logging.getLogger(__name__)

SECTIONS = ("retrieval", "captioning", "modality_switch", "text_to_x", "people")
TARGETS = {"retrieval": 0.9, "captioning": 0.9, "modality_switch": 0.95, "text_to_x": 0.8,
           "people": {"media": 0.9, "media_and_place": 0.85, "x_to_text": 0.9, "x_to_y": 0.8, "vlog_places": 0.9,
                      "claims_missing": 0.0}}
PEOPLE_FILE = "people_prompts.jsonl"  # in the nextmm.toyworld package
EVAL_FILES = ("samples.json", "captions.json", "modality_switch.json", "concepts.json")
MEDIA_ARGUMENT = {"image": "images", "audio": "audios", "video": "videos"}  # model.chat's keyword per modality


# ------------------------------------------------------------------------------------------ the data
@dataclass(frozen=True)
class EvalSet:
    """The held-out files of a toyworld; media paths in them are relative to ``folder``."""

    folder: Path  # the world's eval/
    samples: list[dict]  # {"id", "concept", "image", "audio", "video", "captions": {m: held-out caption}}
    captions: list[dict]  # {"concept", "modality", "file", "prompt"}
    modality_switch: list[dict]  # {"concept", "prompt", "modalities"}
    concepts: dict[str, dict]  # concept -> {"keywords", "captions": {m: canonical caption}}

    @classmethod
    def load(cls, root: str | Path) -> EvalSet:
        """Read ``<root>/eval/`` (or ``root`` itself when it is the eval folder)."""
        root = Path(root)
        folder = root if (root / "samples.json").is_file() else root / "eval"
        missing = [name for name in EVAL_FILES if not (folder / name).is_file()]
        if missing:
            raise ConfigError(
                f"data_root={root} holds no toyworld eval set ({', '.join(missing)} missing in {folder}): give a "
                "world built by python -m nextmm world, or data_root=null to render the held-out set"
            )
        data = {}
        for name in EVAL_FILES:
            try:
                data[name.removesuffix(".json")] = json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ConfigError(f"cannot read {folder / name}: {error}") from None
        return cls(folder, **data)


def render_eval_set(output: str | Path, *, seed: int, eval_samples: int, eval_prompts: int, workers: int = 2,
                    progress: bool = True) -> Path:
    """Render only the held-out part of the toyworld of ``seed`` into ``output``; returns the world folder."""
    from nextmm.toyworld.build import build

    return build(output, seed=seed, samples=0, instructions=0, eval_samples=eval_samples, eval_prompts=eval_prompts,
                 workers=workers, progress=progress)


def text_to_x_prompts(concepts: Iterable[str], per_concept: int, seed: int = 0) -> list[dict]:
    """Held-out single-medium requests: per concept, modality and index {"concept", "modality", "prompt"}.

    Templates and subjects are the held-out wordings of nextmm.toyworld.language: a concept's requests for a medium
    take its templates in turn from a drawn one, each with a drawn subject, all seeded by (seed, concept, modality,
    index), so the list is the same on every run and a concept's requests differ.
    """
    from nextmm.toyworld.build import text_rng

    prompts = []
    for concept in concepts:
        for modality in MODALITIES:
            templates = wordings.REQUESTS[modality].heldout  # taken in turn from a drawn one: no repeats within a concept
            first = int(text_rng(seed, "text-to-x", concept, modality).integers(len(templates)))
            for index in range(per_concept):
                rng = text_rng(seed, "text-to-x", concept, modality, index)
                template = templates[(first + index) % len(templates)]
                prompt = template.format(x=lang.subject(concept, rng, "heldout"))
                prompts.append({"concept": concept, "modality": modality, "prompt": prompt})
    return prompts


def subset(items: Sequence[dict], limit: int | None, seed: int = 0) -> list[dict]:
    """At most ``limit`` items, spread over the concepts: each concept's items shuffled (seeded), then taken in
    turn, one concept after another. None keeps them all, in order."""
    if limit is None or limit >= len(items):
        return list(items)
    rng = np.random.default_rng(seed)
    by_concept: dict[str, list[dict]] = {}
    for item in items:
        by_concept.setdefault(item["concept"], []).append(item)
    queues = [[group[i] for i in rng.permutation(len(group))] for group in by_concept.values()]
    picked = []
    for position in range(max(len(q) for q in queues)):
        picked += [q[position] for q in queues if position < len(q)]
    return picked[:limit]


# ---------------------------------------------------------------------------------------------- scoring
def names_concept(answer: str, concept: str) -> bool:
    """A caption is right when it names its concept and no other (the concepts' keywords are disjoint)."""
    return concept_of(answer) == concept


def same_outputs(produced: Iterable[str], expected: Iterable[str]) -> bool:
    """Modality switching is right when the answer asked for exactly the expected set of media."""
    return set(produced) == set(expected)


def output_kind(modalities: Iterable[str]) -> str:
    """"text" for a text-only answer, else the media in MODALITIES order: "image+audio"."""
    wanted = set(modalities)
    return "+".join(m for m in MODALITIES if m in wanted) or "text"


def accuracy_by(results: Iterable[tuple[str, bool]], overall: bool = True) -> dict[str, float]:
    """(group, right) pairs -> the share right per group, in first-seen order, then "overall"."""
    groups: dict[str, list[bool]] = {}
    for group, right in results:
        groups.setdefault(group, []).append(bool(right))
    scores = {group: sum(rights) / len(rights) for group, rights in groups.items()}
    if overall and groups:
        everything = [right for rights in groups.values() for right in rights]
        scores["overall"] = sum(everything) / len(everything)
    return scores


def retrieval_scores(media: Mapping[str, torch.Tensor], texts: Mapping[str, torch.Tensor],
                     labels: torch.Tensor) -> dict[str, float]:
    """Concept R@1 both ways per modality: media[m] (N, D) and texts[m] (N, D) embed the same N scenes, whose
    concepts are ``labels`` (N,); a query is right when its nearest key shows the same concept."""
    scores = {}
    for m in media:
        scores[f"text->{m}"] = retrieval_at_1(texts[m], media[m], labels, labels)
        scores[f"{m}->text"] = retrieval_at_1(media[m], texts[m], labels, labels)
    return scores


def nearest(queries: torch.Tensor, keys: torch.Tensor, names: Sequence[str]) -> list[str]:
    """The name of the most cosine-similar key (K, D) for each query (Q, D)."""
    similarity = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T  # (Q, K)
    return [names[int(i)] for i in similarity.argmax(dim=1)]


def passed(section: str, scores: Mapping[str, float]) -> bool:
    """Whether a section meets its target: every retrieval direction, overall captioning and modality-switch
    accuracy, every text -> X modality by the encoder, and each of the people section's targeted scores (the
    share of claimed-but-missing media at most its target, the others at least theirs)."""
    if section == "people":
        return all(scores[key] is not None and (scores[key] <= target if key == "claims_missing" else
                                                scores[key] >= target) for key, target in TARGETS["people"].items())
    if section in ("captioning", "modality_switch"):
        scores = {"overall": scores["overall"]}
    if section == "text_to_x":
        scores = {m: scores[m] for m in MODALITIES if m in scores}
    return bool(scores) and all(value >= TARGETS[section] for value in scores.values())


# --------------------------------------------------------------------------------------------- measuring
def _bar(items: Sequence | None, section: str, progress: bool, total: int | None = None) -> tqdm:
    return tqdm(items, desc=section, total=total, unit="item", disable=not progress, leave=False, dynamic_ncols=True)


@torch.no_grad()
def retrieval(encoder, eval_set: EvalSet, *, samples: Sequence[dict] | None = None, batch_size: int = 8,
              progress: bool = True) -> dict[str, float]:
    """Zero-shot concept R@1 of the encoder between each held-out scene's media and its held-out captions."""
    from nextmm.parts.preprocess import load_media

    samples = eval_set.samples if samples is None else samples
    concept_index = {c: i for i, c in enumerate(eval_set.concepts)}
    labels = torch.tensor([concept_index[s["concept"]] for s in samples])
    media, texts = {}, {}
    with _bar(None, "retrieval", progress, total=len(samples) * len(MODALITIES)) as bar:
        for m in MODALITIES:
            parts = []
            for start in range(0, len(samples), batch_size):
                batch = samples[start : start + batch_size]
                parts.append(encoder(m, torch.stack([load_media(m, eval_set.folder / s[m]) for s in batch])).cpu())
                bar.update(len(batch))
            media[m] = torch.cat(parts)  # (N, D)
            texts[m] = encoder.encode_captions([s["captions"][m] for s in samples]).cpu()  # (N, D)
    return retrieval_scores(media, texts, labels)


def captioning(model, eval_set: EvalSet, *, records: Sequence[dict] | None = None, max_new_tokens: int = 48,
               seed: int = 0, progress: bool = True) -> dict[str, float]:
    """X -> text: each record's held-out question about its medium, answered greedily; concept accuracy per
    modality and overall."""
    records = eval_set.captions if records is None else records
    results = []
    for record in _bar(records, "captioning", progress):
        m = record["modality"]
        turn = model.chat(record["prompt"], **{MEDIA_ARGUMENT[m]: [eval_set.folder / record["file"]]},
                          max_new_tokens=max_new_tokens, temperature=0.0, seed=seed, render=False, progress=False)
        results.append((m, names_concept(turn.text, record["concept"])))
    return accuracy_by(sorted(results, key=lambda r: MODALITIES.index(r[0])))


def modality_switch(model, eval_set: EvalSet, *, records: Sequence[dict] | None = None, max_new_tokens: int = 128,
                    seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Each held-out prompt answered greedily, up to the signal tokens (nothing rendered); right when the
    answer's signal runs name exactly the expected modalities. Accuracy per expected set and overall."""
    records = eval_set.modality_switch if records is None else records
    results = []
    for record in _bar(records, "modality_switch", progress):
        turn = model.chat(record["prompt"], max_new_tokens=max_new_tokens, temperature=0.0, seed=seed, render=False,
                          progress=False)
        results.append((output_kind(record["modalities"]), same_outputs(turn.signals, record["modalities"])))
    order = [output_kind(k) for k in ([], *([m] for m in MODALITIES), *wordings.MULTI_REQUESTS)]
    return accuracy_by(sorted(results, key=lambda r: order.index(r[0]) if r[0] in order else len(order)))


@torch.no_grad()
def text_to_x(model, eval_set: EvalSet, prompts: Sequence[dict], *, max_new_tokens: int = 128, seed: int = 0,
              num_inference_steps: int | None = None, guidance_scale: float | None = None,
              judge: PlaceJudge | None = None, progress: bool = True) -> dict[str, float]:
    """Each prompt answered with its modality forced and rendered; the encoder embeds the rendered medium and
    finds the nearest of every concept's canonical caption for that modality. Accuracy per modality, and with a
    ``judge`` the share the world's features place right ("world/<m>"). Steps and guidance left None are each
    decoder config's."""
    from nextmm.inference.conversation import to_media

    names = list(eval_set.concepts)
    keys = {m: model.encoder.encode_captions([eval_set.concepts[c]["captions"][m] for c in names]).cpu()
            for m in MODALITIES}  # (C, D) each
    results = []
    for item in _bar(prompts, "text_to_x", progress):
        m = item["modality"]
        turn = model.chat(item["prompt"], outputs=[m], max_new_tokens=max_new_tokens, temperature=0.0, seed=seed,
                          num_inference_steps=num_inference_steps,
                          guidance_scale=guidance_scale, progress=False)
        rendered = turn.media(m)[0]
        medium = rendered if m == "image" else (rendered, turn.sample_rate if m == "audio" else turn.fps)
        embedding = model.encoder(m, to_media(m, medium).data[None]).cpu()  # (1, D)
        results.append((m, nearest(embedding, keys[m], names)[0] == item["concept"]))
        if judge is not None:
            results.append((f"world/{m}", judge(m, rendered) == item["concept"]))
    order = [*MODALITIES, *(f"world/{m}" for m in MODALITIES)]
    return accuracy_by(sorted(results, key=lambda r: order.index(r[0])), overall=False)


def people_records(path: str | Path | None = None) -> list[dict]:
    """The people's wordings (nextmm/toyworld/people_prompts.jsonl, or ``path``): one JSON object per line with
    "kind", "prompt", "before" (an earlier message, or null), "input" ({"modality", "place"} or null), "media"
    (expected outputs) and "place" (whose media or words the answer must be, or null)."""
    source = Path(path) if path else resources.files("nextmm.toyworld") / PEOPLE_FILE
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read the people's wordings {source}: {error}") from None


@torch.no_grad()
def people(model, eval_set: EvalSet, records: Sequence[dict], judge: PlaceJudge, *, max_new_tokens: int = 128,
           seed: int = 0, progress: bool = True) -> dict[str, float]:
    """Each record answered greedily as a person would be (an attached medium is a held-out scene of its place;
    a follow-up comes after its earlier message); media are rendered and placed by the world's features.

    Scores: ``media`` (exactly the expected media, as generation delivers them), ``media_llm`` (the same from the
    LLM's own signal tokens, before generation adds media its words claimed), ``media_and_place`` (requests,
    X -> Y, vlogs and follow-ups: the right media, each showing the right place), ``x_to_text`` and
    ``questions`` (text only, naming the place), ``x_to_y``, ``vlogs`` and ``vlog_places`` (the share of places
    whose every vlog request is right), ``unknown`` (something outside the world: no media, and the answer names
    the places it knows), ``chat``, ``claims_missing`` (answers whose words claim a medium they do not deliver)
    and ``claims_added`` (answers whose claimed medium the LLM left out and generation added), ``overall``.
    """
    inputs = {c: [s for s in eval_set.samples if s["concept"] == c] for c in eval_set.concepts}
    used: dict[str, int] = {}
    rows = []
    for record in _bar(records, "people", progress):
        media_args = {}
        if record["input"]:
            m, place = record["input"]["modality"], record["input"]["place"]
            index = used[place] = used.get(place, -1) + 1
            sample = inputs[place][index % len(inputs[place])]
            media_args = {MEDIA_ARGUMENT[m]: [eval_set.folder / sample[m]]}
        chat = model.conversation(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed, progress=False)
        if record.get("before"):
            chat.say(record["before"], render=False)
        turn = chat.say(record["prompt"], render=bool(record["media"]), **media_args)
        rows.append((record, turn, _people_row(record, turn, judge)))
    return people_scores([(record, row) for record, _, row in rows])


def _people_row(record: dict, turn, judge: PlaceJudge) -> dict[str, bool]:
    """What one answer got right (see ``people``)."""
    expected, produced = set(record["media"]), set(turn.signals)
    place = record["place"]
    placed = all(judge(m, turn.media(m)[0]) == place for m in expected if turn.media(m))
    return {
        "media": produced == expected,
        "media_llm": produced - set(turn.forced) == expected,
        "placed": produced == expected and placed and all(turn.media(m) for m in expected),
        "names_place": not produced and place is not None and concept_of(turn.text) == place,
        "names_places": not produced and len(concepts_in(turn.text)) >= 3,
        "claims_missing": bool(set(claimed_media(turn.text)) - produced),
        "claims_added": bool(turn.forced),
    }


def people_scores(rows: Sequence[tuple[dict, dict[str, bool]]]) -> dict[str, float | None]:
    """The people section's scores from each (record, row of _people_row)."""
    def share(values: Iterable[bool]) -> float | None:
        values = list(values)
        return sum(values) / len(values) if values else None  # None: nothing of the kind was measured

    right = {"request": "placed", "x_to_y": "placed", "vlog": "placed", "followup": "placed",
             "describe": "names_place", "question": "names_place", "unknown": "names_places", "chat": "media"}
    kinds = [kind for kind in right if any(r["kind"] == kind for r, _ in rows)]
    by_kind = {kind: [row[right[kind]] for r, row in rows if r["kind"] == kind] for kind in kinds}
    vlogs: dict[str, list[bool]] = {}
    for record, row in rows:
        if record["kind"] == "vlog":
            vlogs.setdefault(record["place"], []).append(row["placed"])
    return {
        "media": share(row["media"] for _, row in rows),
        "media_llm": share(row["media_llm"] for _, row in rows),
        "media_and_place": share(row["placed"] for r, row in rows if right.get(r["kind"]) == "placed"),
        "x_to_text": share(by_kind.get("describe", [])),
        "questions": share(by_kind.get("question", [])),
        "x_to_y": share(by_kind.get("x_to_y", [])),
        "vlogs": share(by_kind.get("vlog", [])),
        "vlog_places": share(all(v) for v in vlogs.values()),
        "unknown": share(by_kind.get("unknown", [])),
        "chat": share(by_kind.get("chat", [])),
        "followup": share(by_kind.get("followup", [])),
        "requests": share(by_kind.get("request", [])),
        "claims_missing": share(row["claims_missing"] for _, row in rows),
        "claims_added": share(row["claims_added"] for _, row in rows),
        "overall": share(row[right[r["kind"]]] for r, row in rows),
    }


def evaluate(model, eval_set: EvalSet, *, sections: Sequence[str] = SECTIONS, limit: int | None = None,
             seed: int = 0, max_new_tokens: Mapping[str, int] | None = None, text_to_x_per_concept: int = 3,
             num_inference_steps: int | None = None, guidance_scale: float | None = None, batch_size: int = 8,
             people_file: str | Path | None = None, progress: bool = True) -> dict:
    """Run the sections asked for; returns {section: scores, "targets", "passed", "items", "timings_s"}."""
    tokens = {"captioning": 48, "modality_switch": 128, "text_to_x": 128, "people": 128, **(max_new_tokens or {})}
    judge = PlaceJudge(seed=seed) if {"text_to_x", "people"} & set(sections) else None
    items = {
        "retrieval": subset(eval_set.samples, limit, seed),
        "captioning": subset(eval_set.captions, limit, seed),
        "modality_switch": subset(eval_set.modality_switch, limit, seed),
        "text_to_x": subset(text_to_x_prompts(eval_set.concepts, text_to_x_per_concept, seed), limit, seed),
        "people": subset([dict(r, concept=r["place"]) for r in people_records(people_file)] if "people" in sections
                         else [], limit, seed),
    }
    run = {
        "retrieval": lambda: retrieval(model.encoder, eval_set, samples=items["retrieval"], batch_size=batch_size,
                                       progress=progress),
        "captioning": lambda: captioning(model, eval_set, records=items["captioning"], seed=seed, progress=progress,
                                         max_new_tokens=tokens["captioning"]),
        "modality_switch": lambda: modality_switch(model, eval_set, records=items["modality_switch"], seed=seed,
                                                   max_new_tokens=tokens["modality_switch"], progress=progress),
        "text_to_x": lambda: text_to_x(model, eval_set, items["text_to_x"], seed=seed, guidance_scale=guidance_scale,
                                       max_new_tokens=tokens["text_to_x"], num_inference_steps=num_inference_steps,
                                       judge=judge, progress=progress),
        "people": lambda: people(model, eval_set, items["people"], judge, seed=seed, max_new_tokens=tokens["people"],
                                 progress=progress),
    }
    result: dict = {}
    timings, met = {}, {}
    for section in sections:
        start = time.perf_counter()
        scores = run[section]()
        timings[section] = round(time.perf_counter() - start, 2)
        result[section] = {k: None if v is None else round(v, 4) for k, v in scores.items()}
        met[section] = passed(section, scores)
        log.info("%s (%d items, %.0f s): %s", section, len(items[section]), timings[section],
                 " ".join(f"{k} {v:.3f}" for k, v in scores.items() if v is not None))
    result["targets"] = {s: TARGETS[s] for s in sections}
    result["passed"] = met
    result["items"] = {s: len(items[s]) for s in sections}
    result["timings_s"] = timings
    return result


# --------------------------------------------------------------------------------------------------- CLI
def _sections(value) -> list[str]:
    sections = [str(s) for s in ([value] if isinstance(value, str) else value or [])]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ConfigError(f"sections={sections}: choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in sections]


def check_settings(cfg: DictConfig, tokens: Mapping) -> None:
    """The numbers and files the evaluation reads, checked before the held-out set is rendered or the model built."""
    positive = (whole(1), "a whole number >= 1")
    rules = {"threads": (whole(1), "a whole number of threads >= 1, or null for all"), "batch_size": positive,
             "num_inference_steps": (whole(1, 1000), "a whole number of denoising steps from 1 to 1000, or null"),
             "guidance_scale": (lambda v: number(v) and v >= 0, "0 or more, or null for the decoder's")}
    check({key: cfg[key] for key in rules}, rules)
    check_memory(cfg.memory, cfg.memory_limit)
    check({f"world.{key}": cfg.world[key] for key in ("eval_samples", "eval_prompts", "workers")},
          {f"world.{key}": positive for key in ("eval_samples", "eval_prompts", "workers")})
    unknown = set(tokens) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"max_new_tokens has {sorted(unknown)}: give one number, or one for each of "
                          f"{', '.join(SECTIONS)}")
    check({f"max_new_tokens.{s}": n for s, n in tokens.items()},
          {f"max_new_tokens.{s}": (whole(1), "a whole number of tokens >= 1") for s in tokens})
    if cfg.people_file is not None and "people" in _sections(cfg.sections) and not Path(cfg.people_file).is_file():
        raise ConfigError(f"people_file={cfg.people_file} is not a file: give a JSON-lines file, or null for the "
                          "shipped one")
    if cfg.output:
        output = Path(cfg.output)
        if output.is_dir():
            raise ConfigError(f"output={output} is a folder: give the path of a JSON file to write")
        existing = next(p for p in (output.parent.absolute(), *output.parent.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise ConfigError(f"output={output}: {existing} is a file, not a folder; give a path in a folder")


def main(cfg: DictConfig) -> None:
    from nextmm.atomic import staged_file
    from nextmm.cli.generate import answering_model, resolve_device, resolve_dtype

    sections = _sections(cfg.sections)
    if cfg.limit is not None and not (isinstance(cfg.limit, int) and cfg.limit >= 1):
        raise ConfigError(f"limit={cfg.limit}: give a positive number of items per section, or null for all")
    if not (isinstance(cfg.text_to_x_prompts, int) and cfg.text_to_x_prompts >= 1):
        raise ConfigError(f"text_to_x_prompts={cfg.text_to_x_prompts}: give a positive number")
    tokens = cfg.max_new_tokens  # one number for every section, or {section: number}
    tokens = {s: tokens for s in SECTIONS} if not isinstance(tokens, DictConfig) else dict(tokens)
    check_settings(cfg, tokens)
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    progress = not cfg.quiet
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nextmm-eval-") as scratch:
        # 1. the held-out set, read (or rendered) before the model is built: a bad data_root fails in a second
        if cfg.data_root is not None:
            eval_set, data = EvalSet.load(cfg.data_root), str(cfg.data_root)
        else:
            world = cfg.world
            log.info("rendering the held-out toyworld set (seed %d) into a temporary folder", world.seed)
            root = render_eval_set(Path(scratch) / "toyworld", seed=world.seed, eval_samples=world.eval_samples,
                                   eval_prompts=world.eval_prompts, workers=world.workers, progress=progress)
            eval_set = EvalSet.load(root)
            data = (f"rendered: seed={world.seed} eval_samples={world.eval_samples} "
                    f"eval_prompts={world.eval_prompts}")
        # 2. the model, 3. the sections
        model = answering_model(cfg, device, dtype, batch=cfg.batch_size)
        scores = evaluate(model, eval_set, sections=sections, limit=cfg.limit, seed=cfg.seed,
                          max_new_tokens=tokens, text_to_x_per_concept=cfg.text_to_x_prompts,
                          num_inference_steps=cfg.num_inference_steps, guidance_scale=cfg.guidance_scale,
                          batch_size=cfg.batch_size, people_file=cfg.people_file, progress=progress)
    result = {"model": cfg.model.name, "data": data, "seed": cfg.seed, **scores}
    result["timings_s"]["total"] = round(time.perf_counter() - start, 2)
    text = json.dumps(result, indent=1)
    if cfg.output:
        output = Path(cfg.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        with staged_file(output) as path:
            path.write_text(text + "\n", encoding="utf-8")
    print(text)
