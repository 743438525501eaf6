"""``python -m nextmm world output=data/toyworld seed=0 samples=200``: the toyworld data set.

Writes NExT-GPT's data/ layout (so nextmm/conf/data/*.yaml read it with ``data.root=<output>``), the aligned
scene list the encoder pretraining reads, and held-out evaluation files (layout: docs/toyworld.md):

    T_X_pair_data/{cc3m,webvid,audiocap}/     caption pairs + images/ videos/ audios/
    IT_data/T+X-T_data/{llava,videochat,alpaca}/   X -> text and text -> text
    IT_data/T-T+X_data/*_instruction_tuning.json   text -> text + X (T2M)
    IT_data/MosIT_data/                        multi-turn any-to-any, vlogs
    scenes.json                                every pair scene: concept, seed, its three files and captions
    eval/                                      held-out scenes and wordings
    manifest.json                              settings and counts

Everything follows from ``seed``: a scene's seed and a record's wording come from (seed, set, concept,
index), so the annotation files are byte-identical on every run and media render identically whatever the
worker count. The folder is written aside and swapped in whole.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from nextmm.modality import MODALITIES
from nextmm.toyworld import asking, wordings
from nextmm.toyworld import language as lang
from nextmm.toyworld import phrasebook as book
from nextmm.toyworld.concepts import CONCEPT_NAMES, get_concept
from nextmm.toyworld.render import Settings, render_audio, render_video, sample_scene

log = logging.getLogger(__name__)

EXTENSIONS = {"image": "png", "audio": "wav", "video": "mp4"}
FOLDERS = {"image": "images", "audio": "audios", "video": "videos"}
PAIRS = {"image": "T_X_pair_data/cc3m", "video": "T_X_pair_data/webvid", "audio": "T_X_pair_data/audiocap"}
PAIR_FILES = {"image": "cc3m.json", "video": "webvid.json", "audio": "audiocap.json"}
LLAVA, VIDEOCHAT, ALPACA = "IT_data/T+X-T_data/llava", "IT_data/T+X-T_data/videochat", "IT_data/T+X-T_data/alpaca"
T2M = "IT_data/T-T+X_data"
MOSIT = "IT_data/MosIT_data"
EVAL = "eval"
# One kind per record, in turn; requests for several media in one turn are the rarest elsewhere, so multi_out
# comes three times.
MOSIT_KINDS = ("vlog", "vlog_music", "multi_out", "image_in", "audio_in", "video_in", "multi_out", "text_chain",
               "ask_then_hear", "multi_out", "cross", "cross")
# The share of training requests and questions (T2M, MosIT's requests, vlogs and follow-ups, Alpaca's questions)
# written in people's words (nextmm.toyworld.asking) instead of a train template: the stages then read the
# wording the language model was pretrained on, not only the templates'. Answers are asking's in either case.
GRAMMAR_SHARE = 3 / 4


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit seed for (seed, keys...): strings hashed with crc32, so it never depends on Python's hash salt."""
    words = [seed] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def text_rng(seed: int, *keys: str | int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, "text", *keys))


@dataclass(frozen=True)
class RenderJob:
    """One scene and the files (modality -> path) to write from it."""

    concept: str
    seed: int
    files: tuple[tuple[str, str], ...]


@dataclass
class Plan:
    """What the build writes: annotation files (relative path -> JSON value) and the scenes to render."""

    annotations: dict[str, object] = field(default_factory=dict)
    jobs: list[RenderJob] = field(default_factory=list)

    def scene(self, folder: str, concept: str, seed: int, name: str, modalities: Sequence[str]) -> dict[str, str]:
        """Queue a scene; returns the file name (relative to ``folder/<modality folder>``) per modality."""
        names = {m: f"{name}.{EXTENSIONS[m]}" for m in modalities}
        self.jobs.append(RenderJob(concept, seed, tuple((m, f"{folder}/{FOLDERS[m]}/{names[m]}") for m in modalities)))
        return names


# --------------------------------------------------------------------------------------------- planning
def plan(seed: int, concepts: Sequence[str], samples: int, instructions: int, eval_samples: int,
         eval_prompts: int, mosit: int | None = None) -> Plan:
    """What to write; ``mosit`` MosIT conversations per concept (None: ``instructions``, as every other set)."""
    for concept in concepts:
        get_concept(concept)
    out = Plan()
    _pairs(out, seed, concepts, samples)
    _llava(out, seed, concepts, instructions)
    _videochat(out, seed, concepts, instructions)
    _alpaca(out, seed, concepts, instructions)
    _t2m(out, seed, concepts, instructions, samples)
    _mosit(out, seed, concepts, instructions if mosit is None else mosit)
    _eval(out, seed, concepts, eval_samples, eval_prompts)
    return out


def _pairs(out: Plan, seed: int, concepts, samples: int) -> None:
    pairs = {m: [] for m in MODALITIES}
    scenes = []
    for concept in concepts:
        for i in range(samples):
            scene_seed = derive_seed(seed, "pairs", concept, i)
            rng = text_rng(seed, "pairs", concept, i)
            caption = {m: lang.captions(concept, m, rng) for m in MODALITIES}
            entry = {"id": f"{concept}_{i:05d}", "concept": concept, "seed": scene_seed}
            for m in MODALITIES:
                (name,) = out.scene(PAIRS[m], concept, scene_seed, entry["id"], [m]).values()
                pairs[m].append({"caption": caption[m], f"{m}_name": name})
                entry[m] = f"{PAIRS[m]}/{FOLDERS[m]}/{name}"
            entry["captions"] = caption
            scenes.append(entry)
    for m in MODALITIES:
        out.annotations[f"{PAIRS[m]}/{PAIR_FILES[m]}"] = pairs[m]
    out.annotations["scenes.json"] = scenes
    _merge_scene_jobs(out)


def _merge_scene_jobs(out: Plan) -> None:
    """The pair sets share their scenes: one job writes a scene's image, video and audio."""
    merged: dict[tuple[str, int], list] = {}
    for job in out.jobs:
        merged.setdefault((job.concept, job.seed), []).extend(job.files)
    out.jobs = [RenderJob(concept, seed, tuple(files)) for (concept, seed), files in merged.items()]


def _turn(role: str, value: str, **extra) -> dict:
    return {"from": role, "value": value, **extra}


def _follow_up(modality: str, concept: str, rng) -> list[dict]:
    """A later question asking for ``modality`` of the same scene, and its answer."""
    exchange = asking.follow_up(modality, concept, rng)
    prompt = exchange.prompt if rng.random() < GRAMMAR_SHARE else lang.pick(rng, wordings.FOLLOW_UPS[modality])
    return [_turn("human", prompt), _turn("gpt", exchange.answer)]


def _llava(out: Plan, seed: int, concepts, count: int) -> None:
    records = []
    for concept in concepts:
        for i in range(count):
            rng = text_rng(seed, "llava", concept, i)
            name = out.scene(LLAVA, concept, derive_seed(seed, "llava", concept, i), f"{concept}_{i:05d}",
                             ["image"])["image"]
            turns = [_turn("human", f"<image>\n{_describe_question('image', rng)}"),
                     _turn("gpt", lang.describe_answer("image", lang.phrase(concept, "image", rng), rng))]
            if rng.random() < 0.3:  # a follow-up that asks for knowledge, answered in words
                turns += [_turn("human", "What would you hear there?"), _turn("gpt", lang.words(concept).sounds)]
            records.append({"id": f"{concept}_{i:05d}", "image": name, "conversations": turns})
    out.annotations[f"{LLAVA}/llava.json"] = records


def _videochat(out: Plan, seed: int, concepts, count: int) -> None:
    records = []
    for concept in concepts:
        for i in range(count):
            rng = text_rng(seed, "videochat", concept, i)
            name = out.scene(VIDEOCHAT, concept, derive_seed(seed, "videochat", concept, i), f"{concept}_{i:05d}",
                             ["video"])["video"]
            qa = [{"i": "", "q": _describe_question("video", rng),
                   "a": lang.describe_answer("video", lang.phrase(concept, "video", rng), rng)}]
            if rng.random() < 0.3:
                qa.append({"i": "", "q": "What moves in it?", "a": lang.words(concept).moves})
            records.append({"video": name, "QA": qa})
    out.annotations[f"{VIDEOCHAT}/videochat.json"] = records


def _alpaca(out: Plan, seed: int, concepts, count: int) -> None:
    records = []
    for concept in concepts:
        w = lang.words(concept)
        for i in range(count):
            rng = text_rng(seed, "alpaca", concept, i)
            topic = ("looks", "sounds", "moves")[i % 3]
            subject = lang.subject(concept, rng)
            asked = (asking.question(concept, rng, topic).prompt if rng.random() < GRAMMAR_SHARE
                     else lang.question(topic, subject, rng))
            records.append({"instruction": asked, "input": "", "output": getattr(w, topic)})
    for i in range(max(1, count // 4) * len(wordings.CHAT)):
        prompt, answer = wordings.CHAT[i % len(wordings.CHAT)]
        records.append({"instruction": prompt, "input": "", "output": lang.chat_answer(answer)})
    for i in range(count * len(concepts) // 4):  # things outside the world, and more small talk
        rng = text_rng(seed, "alpaca-outside", i)
        exchange = asking.chat(rng) if i % 4 == 3 else asking.unknown(rng)
        records.append({"instruction": exchange.prompt, "input": "", "output": exchange.answer})
    out.annotations[f"{ALPACA}/alpaca.json"] = records


def _t2m(out: Plan, seed: int, concepts, count: int, samples: int) -> None:
    for m in MODALITIES:
        records = []
        for concept in concepts:
            for i in range(count):
                rng = text_rng(seed, "t2m", m, concept, i)
                subject = lang.subject(concept, rng)
                caption = lang.captions(concept, m, rng)
                record = {"conversation": [
                    _turn("human", _request([m], concept, subject, rng)),
                    _turn("gpt", asking.answer([m], concept, rng), caption=caption, output_modality=m),
                ]}
                if samples:  # target media: a pair-set scene of the same concept; records.py counts them against
                    record[f"{m}_captions"] = [caption]  # the record's caption list, so the caption is listed too
                    record[f"output_{m}"] = [f"{concept}_{i % samples:05d}.{EXTENSIONS[m]}"]
                records.append(record)
        out.annotations[f"{T2M}/{m}_instruction_tuning.json"] = records


def _describe_question(modality: str, rng) -> str:
    """A question about an input medium: in people's words (GRAMMAR_SHARE of them) or a train template."""
    return asking.describe(modality, rng) if rng.random() < GRAMMAR_SHARE else lang.describe_question(modality, rng)


def _request(media: Sequence[str], concept: str, subject: str, rng) -> str:
    """A training request for ``media``: in people's words (GRAMMAR_SHARE of them) or a train template's."""
    if rng.random() < GRAMMAR_SHARE:
        return asking.media_request(media, concept, rng).prompt
    return lang.request(media, subject, rng)


def _mosit(out: Plan, seed: int, concepts, count: int) -> None:
    records = []
    for concept in concepts:
        for i in range(count):
            records.append(_mosit_record(out, seed, concept, i, MOSIT_KINDS[i % len(MOSIT_KINDS)]))
    out.annotations[f"{MOSIT}/mosit_instruction_tuning.json"] = records


def _mosit_record(out: Plan, seed: int, concept: str, i: int, kind: str) -> dict:
    """One MosIT conversation of ``kind``; media of one scene, inputs and outputs alike."""
    rng = text_rng(seed, "mosit", concept, i)
    w = lang.words(concept)
    scene_seed, name = derive_seed(seed, "mosit", concept, i), f"{concept}_{i:05d}"
    record: dict = {"id": name, "kind": kind}
    outputs: list[tuple[str, str, str]] = []  # (modality, caption, file)

    def output(m: str, files: dict[str, str], caption_concept: str = concept) -> None:
        outputs.append((m, lang.captions(caption_concept, m, rng), files[m]))

    if kind in ("vlog", "vlog_music"):
        music = kind == "vlog_music"
        k = i // len(MOSIT_KINDS)
        vlog = w.vlogs[k % len(w.vlogs)]
        own = ["image", "video"] if music else list(MODALITIES)
        files = out.scene(MOSIT, concept, scene_seed, name, own)
        audio_concept = wordings.MUSIC[w.vlog_music] if music else concept
        if music:
            files |= out.scene(MOSIT, audio_concept, derive_seed(seed, "mosit-music", concept, i), f"{name}_music",
                               ["audio"])
        # the first vlog of each name is the bare request ("surf vlog"), later ones vary the wording
        if k < len(w.vlogs) and not music:
            prompt = f"{vlog} vlog"
        elif rng.random() < GRAMMAR_SHARE and not music:
            prompt = asking.vlog(concept, rng).prompt
        else:
            prompt = lang.vlog_request(vlog, rng, music=music)
        for m in MODALITIES:  # the answer's order: <image> <audio> <video>
            output(m, files, audio_concept if m == "audio" else concept)
        turns = [_turn("human", prompt), _turn("gpt", lang.vlog_answer(vlog, rng) if music
                                              else book.VLOG_ANSWER.format(v=book.VLOG_NAMES[concept][0]))]
    elif kind in ("image_in", "audio_in", "video_in"):
        given = kind.removesuffix("_in")
        wanted = {"image": ["audio", "video"], "audio": ["image", "video"], "video": ["audio", "image"]}[given]
        wanted = wanted[: 1 + int(rng.random() < 0.4)]  # one follow-up, sometimes two
        files = out.scene(MOSIT, concept, scene_seed, name, [given, *wanted])
        record[f"input_{given}"] = [files[given]]
        turns = [_turn("human", f"<{given}>\n{_describe_question(given, rng)}"),
                 _turn("gpt", lang.describe_answer(given, lang.phrase(concept, given, rng), rng))]
        for m in wanted:
            turns += _follow_up(m, concept, rng)
            output(m, files)
    elif kind == "cross":  # one turn: a medium in, another medium of its place out
        given, wanted = [str(m) for m in rng.choice(MODALITIES, size=2, replace=False)]
        files = out.scene(MOSIT, concept, scene_seed, name, [given, wanted])
        record[f"input_{given}"] = [files[given]]
        exchange = asking.cross_media(given, wanted, concept, rng)
        turns = [_turn("human", f"<{given}>\n{exchange.prompt}"), _turn("gpt", exchange.answer)]
        output(wanted, files)
    elif kind == "text_chain":
        files = out.scene(MOSIT, concept, scene_seed, name, ["image", "video"])
        subject = lang.subject(concept, rng)
        turns = [_turn("human", _request(["image"], concept, subject, rng)),
                 _turn("gpt", asking.answer(["image"], concept, rng)),
                 *_follow_up("video", concept, rng),
                 _turn("human", "And what would I hear there?"), _turn("gpt", w.sounds)]
        for m in ("image", "video"):
            output(m, files)
    elif kind == "multi_out":
        combo = list(wordings.MULTI_REQUESTS)[int(rng.integers(0, len(wordings.MULTI_REQUESTS)))]
        files = out.scene(MOSIT, concept, scene_seed, name, list(combo))
        subject = lang.subject(concept, rng)
        way = rng.random()  # a fixed template, or composed from parts or the grammar's, the media in any order
        if way < 1 - GRAMMAR_SHARE:
            prompt, order = lang.request(combo, subject, rng), list(combo)
        else:
            order = [combo[j] for j in rng.permutation(len(combo))]
            prompt = asking.media_request(order, concept, rng).prompt
        turns = [_turn("human", prompt), _turn("gpt", asking.answer(order, concept, rng))]
        for m in order:
            output(m, files)
    elif kind == "ask_then_hear":
        files = out.scene(MOSIT, concept, scene_seed, name, ["audio"])
        subject = lang.subject(concept, rng)
        turns = [_turn("human", lang.question("sounds", subject, rng)), _turn("gpt", w.sounds),
                 *_follow_up("audio", concept, rng)]
        output("audio", files)
    else:
        raise ValueError(f"unknown MosIT kind {kind!r}")

    record["conversations"] = turns
    for m in MODALITIES:  # captions and target files in the order the answers' placeholders appear
        mine = [(caption, file) for modality, caption, file in outputs if modality == m]
        if mine:
            record[f"{m}_captions"] = [caption for caption, _ in mine]
            record[f"output_{m}"] = [file for _, file in mine]
    return record


def _eval(out: Plan, seed: int, concepts, samples: int, prompts: int) -> None:
    """Held-out scenes, captions in held-out wording, and prompts whose wording training never used."""
    scenes, describe, switch = [], [], []
    for concept in concepts:
        for i in range(samples):
            rng = text_rng(seed, "eval", concept, i)
            files = out.scene(EVAL, concept, derive_seed(seed, "eval", concept, i), f"{concept}_{i:05d}",
                              list(MODALITIES))
            paths = {m: f"{FOLDERS[m]}/{files[m]}" for m in MODALITIES}
            scenes.append({"id": f"{concept}_{i:05d}", "concept": concept, **paths,
                           "captions": {m: lang.captions(concept, m, rng, "heldout") for m in MODALITIES}})
            describe += [{"concept": concept, "modality": m, "file": paths[m],
                          "prompt": lang.describe_question(m, rng, "heldout")} for m in MODALITIES]
        kinds = [(), *[(m,) for m in MODALITIES], *wordings.MULTI_REQUESTS, "vlog", "vlog_music"]
        for i in range(prompts):
            rng = text_rng(seed, "eval-prompts", concept, i)
            kind = kinds[i % len(kinds)]
            if isinstance(kind, str):
                prompt = lang.vlog_request(lang.pick(rng, lang.words(concept).vlogs), rng, "heldout",
                                           music=kind == "vlog_music")
                expected = list(MODALITIES)
            elif not kind:
                topic = lang.pick(rng, list(wordings.QUESTIONS))
                prompt, expected = lang.question(topic, lang.subject(concept, rng, "heldout"), rng, "heldout"), []
            else:
                prompt = lang.request(kind, lang.subject(concept, rng, "heldout"), rng, "heldout")
                expected = [m for m in MODALITIES if m in kind]
            switch.append({"concept": concept, "prompt": prompt, "modalities": expected})
    out.annotations[f"{EVAL}/samples.json"] = scenes
    out.annotations[f"{EVAL}/captions.json"] = describe
    out.annotations[f"{EVAL}/modality_switch.json"] = switch
    out.annotations[f"{EVAL}/concepts.json"] = {
        c: {"keywords": list(lang.words(c).keywords), "captions": {m: lang.canonical_caption(c, m) for m in MODALITIES}}
        for c in concepts
    }


# ---------------------------------------------------------------------------------------------- writing
def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """(F, H, W, 3) uint8 -> H.264 yuv420p mp4 (H and W even)."""
    import imageio_ffmpeg

    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", macro_block_size=2,
        ffmpeg_log_level="error", output_params=["-crf", "18", "-preset", "veryfast", "-threads", "1"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def render_job(job: RenderJob, root: Path, settings: Settings) -> None:
    import soundfile

    scene = sample_scene(job.concept, job.seed, settings.size)
    files = dict(job.files)
    video = render_video(scene, settings.frames if "video" in files else 1, settings.fps)
    for m, relative in job.files:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if m == "image":
            Image.fromarray(video[0]).save(path)
        elif m == "video":
            write_video(path, video, settings.fps)
        else:
            soundfile.write(path, render_audio(scene, settings.audio_seconds, settings.sample_rate),
                            settings.sample_rate, subtype="PCM_16")


def _run_job(args: tuple[RenderJob, Path, Settings]) -> int:
    render_job(*args)
    return len(args[0].files)


def build(
    output: str | Path,
    *,
    seed: int = 0,
    samples: int = 200,
    instructions: int = 50,
    mosit: int | None = None,
    eval_samples: int = 10,
    eval_prompts: int = 18,
    concepts: Sequence[str] | None = None,
    settings: Settings = Settings(),
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write the data set to ``output`` (replacing it); returns the folder.

    ``samples=0, instructions=0`` writes the held-out ``eval/`` part alone (with empty training files): it depends
    only on ``seed``, the concepts, ``eval_samples`` and ``eval_prompts``.
    """
    from tqdm.auto import tqdm

    from nextmm.atomic import staged_folder

    concepts = list(concepts or CONCEPT_NAMES)
    mosit = instructions if mosit is None else mosit
    the_plan = plan(seed, concepts, samples, instructions, eval_samples, eval_prompts, mosit)
    output = Path(output)
    with staged_folder(output) as staging:
        for relative, value in the_plan.annotations.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        manifest = {
            "seed": seed, "concepts": concepts, "samples": samples, "instructions": instructions, "mosit": mosit,
            "eval_samples": eval_samples, "eval_prompts": eval_prompts, "render": asdict(settings),
            "records": {k: len(v) for k, v in the_plan.annotations.items() if isinstance(v, list)},
            "media_files": sum(len(job.files) for job in the_plan.jobs),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        args = [(job, staging, settings) for job in the_plan.jobs]
        bar = tqdm(total=manifest["media_files"], desc="toyworld media", unit="file", disable=not progress)
        if workers <= 1:
            for arg in args:
                bar.update(_run_job(arg))
        else:  # an executor, not a Pool: a worker that dies raises BrokenProcessPool instead of hanging
            context = multiprocessing.get_context("spawn")  # workers import numpy and PIL only, never torch
            try:
                with ProcessPoolExecutor(workers, mp_context=context) as pool:
                    for written in pool.map(_run_job, args, chunksize=8):
                        bar.update(written)
            except BrokenProcessPool:
                raise RuntimeError("a toyworld rendering process died (a script read from stdin cannot start "
                                   "spawned workers); run it from a file, or with workers=1 to see the error") from None
        bar.close()
    log.info("wrote %d media files and %d annotation files to %s", manifest["media_files"], len(the_plan.annotations),
             output)
    return output


def main(cfg) -> None:
    from omegaconf import OmegaConf

    from nextmm.errors import ConfigError

    if OmegaConf.is_missing(cfg, "output"):
        raise ConfigError("set output=<folder> for the data set (e.g. output=data/toyworld)")
    try:
        settings = Settings(**OmegaConf.to_container(cfg.render))
        concepts = list(cfg.concepts) if cfg.concepts else None
        for concept in concepts or ():
            get_concept(concept)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"render: {error}") from None
    for key in ("samples", "instructions", "mosit", "eval_samples", "eval_prompts"):
        if cfg[key] is not None and (not isinstance(cfg[key], int) or cfg[key] < 0):
            raise ConfigError(f"{key}={cfg[key]}: give a count, a whole number >= 0")
    if Path(cfg.output).exists() and not Path(cfg.output).is_dir():  # checked before minutes of rendering
        raise ConfigError(f"output={cfg.output} is a file: give a folder for the data set")
    folder = build(cfg.output, seed=cfg.seed, samples=cfg.samples, instructions=cfg.instructions, mosit=cfg.mosit,
                   eval_samples=cfg.eval_samples, eval_prompts=cfg.eval_prompts, concepts=concepts,
                   settings=settings, workers=cfg.workers)
    print(f"wrote the toyworld data set to {folder}")
