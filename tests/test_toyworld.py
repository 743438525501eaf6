"""The toyworld: every concept renders, deterministically, distinguishably, with the sound and motion its
table row claims; its wording keeps concepts and splits apart; the data set it builds reads with nextmm.data."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from numpy.lib.stride_tricks import sliding_window_view
from omegaconf import OmegaConf
from PIL import Image

from nextmm.cli import compose_config
from nextmm.config import conf_dir
from nextmm.data.dataset import read_sources
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES
from nextmm.parts.preprocess import load_media
from nextmm.toyworld import language as lang
from nextmm.toyworld import wordings
from nextmm.toyworld.build import build, main, plan
from nextmm.toyworld.concepts import CONCEPT_NAMES, CONCEPTS, concept_table
from nextmm.toyworld.features import band_share
from nextmm.toyworld.render import (
    Settings,
    render_audio,
    render_image,
    render_sample,
    render_video,
    sample_scene,
)

RATE = 16000


# ----------------------------------------------------------------------------------------------- render
def test_every_concept_renders_image_video_audio():
    assert len(CONCEPT_NAMES) >= 10
    assert {"beach", "forest", "city", "snow", "night", "desert", "rain"} <= set(CONCEPT_NAMES)
    for concept in CONCEPT_NAMES:
        sample = render_sample(concept, seed=3)
        assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.uint8
        assert sample.video.shape == (16, 64, 64, 3) and sample.video.dtype == np.uint8
        assert np.array_equal(sample.video[0], sample.image)  # the image is the video's first frame
        assert sample.audio.dtype == np.float32 and sample.audio.shape == (2 * RATE,)
        assert np.abs(sample.audio).max() == pytest.approx(0.5, abs=1e-3)
        assert np.isfinite(sample.audio).all()


def test_rendering_is_deterministic_by_seed_and_seeds_differ():
    settings = Settings(frames=8, audio_seconds=1.0)
    for concept in ("beach", "city", "concert"):
        first, again, other = (render_sample(concept, seed, settings) for seed in (7, 7, 8))
        for m in MODALITIES:
            assert np.array_equal(getattr(first, m), getattr(again, m)), (concept, m)
            assert not np.array_equal(getattr(first, m), getattr(other, m)), (concept, m)
        assert first.scene == again.scene
    assert render_video(sample_scene("rain", 1), frames=8, fps=8).shape == (8, 64, 64, 3)
    assert render_image(sample_scene("rain", 1, size=32)).shape == (32, 32, 3)


def _image_features(image):
    return image.reshape(4, 16, 4, 16, 3).mean((1, 3)).ravel() / 255  # a 4 x 4 grid of mean colours


def _audio_features(audio):
    power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    edges = np.geomspace(40, 8000, 17)
    bands = np.log10([power[(freqs >= lo) & (freqs < hi)].sum() + 1e-12 for lo, hi in zip(edges[:-1], edges[1:])])
    return bands - bands.max()


def _nearest_centroid_accuracy(train, test, labels):
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    centroids = np.stack([train[labels == k].mean(0) for k in range(len(CONCEPT_NAMES))])
    predicted = np.argmin(((test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    return (predicted == labels).mean()


def test_concepts_are_distinguishable_by_colour_and_by_spectrum():
    """Guards the world against ambiguity: each modality alone tells every concept apart."""
    per_concept = 8
    labels = np.repeat(np.arange(len(CONCEPT_NAMES)), per_concept)
    for features, render in ((_image_features, render_image), (_audio_features, lambda s: render_audio(s, 1.0))):
        split = {
            name: np.stack([features(render(sample_scene(c, offset + i)))
                            for c in CONCEPT_NAMES for i in range(per_concept)])
            for name, offset in (("train", 0), ("test", 10_000))
        }
        assert _nearest_centroid_accuracy(split["train"], split["test"], labels) >= 0.9, features.__name__


def _peak_share(audio, nfft):
    """Share of the energy in spectral peaks: bins 10 x above their neighbourhood's median, per frame."""
    starts = np.arange(0, len(audio) - nfft, nfft // 2)
    spectra = np.abs(np.fft.rfft(audio[starts[:, None] + np.arange(nfft)] * np.hanning(nfft), axis=1)) ** 2
    median = np.median(sliding_window_view(np.pad(spectra, ((0, 0), (10, 10)), mode="edge"), 21, axis=1), axis=2)
    return spectra[spectra > 10 * median].sum() / spectra.sum()


def test_audio_matches_the_concept_table():
    for concept in CONCEPT_NAMES:
        sound = CONCEPTS[concept].sound
        for seed in range(3):
            audio = render_audio(sample_scene(concept, seed)).astype(np.float64)
            assert band_share(audio, sound.band, RATE) >= 0.7, (concept, seed)
            peaks = max(_peak_share(audio, 256), _peak_share(audio, 1024))
            assert (peaks > 0.35) if sound.tonal else (peaks < 0.3), (concept, seed, peaks)
    centroid = {c: 0.0 for c in ("beach", "desert", "city", "rain", "night")}
    for c in centroid:
        audio = render_audio(sample_scene(c, 0)).astype(np.float64)
        power, freqs = np.abs(np.fft.rfft(audio)) ** 2, np.fft.rfftfreq(len(audio), 1 / RATE)
        centroid[c] = (power * freqs).sum() / power.sum()
    assert max(centroid["beach"], centroid["desert"],
               centroid["city"]) < 1500 < 4000 < centroid["rain"]  # waves, wind, engine low; rain high
    assert centroid["night"] > 4000


def _main_shift(before, after, reach=8):
    """The (dy, dx) shift that best maps ``before`` onto ``after`` where the frame changed."""
    changed = np.abs(after.astype(int) - before.astype(int)).sum(-1) > 30
    best, best_error = (0, 0), np.inf
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = np.roll(before, (dy, dx), axis=(0, 1)).astype(int)
            error = np.abs(moved - after.astype(int)).sum(-1)[changed].mean()
            if error < best_error:
                best, best_error = (dy, dx), error
    return best


def test_video_moves_and_main_motion_follows_the_table():
    for concept in CONCEPT_NAMES:
        for seed in (1, 2):
            still = render_video(sample_scene(concept, seed), frames=16, fps=8).astype(int)
            assert all(np.abs(still[i + 1] - still[i]).sum() > 0 for i in range(15)), (concept, seed)
        video = render_video(sample_scene(concept, 5), frames=8, fps=8).astype(int)
        direction = CONCEPTS[concept].motion.direction
        if direction is None:
            continue
        shifts = np.array([_main_shift(video[i], video[i + 1]) for i in range(0, 6, 2)])
        for axis, sign in enumerate(direction):
            if sign:
                assert (np.sign(shifts[:, axis]) == sign).mean() >= 2 / 3, (concept, shifts.tolist())
    assert CONCEPTS["rain"].motion.direction == (1, 0) and CONCEPTS["snow"].motion.direction == (1, 0)


# --------------------------------------------------------------------------------------------- language
def _all_texts(concept, split):
    w = lang.words(concept)
    for m in MODALITIES:
        for x in getattr(w, m).get(split):
            for template in wordings.CAPTION_TEMPLATES[m].get(split):
                yield template.format(x=x)
    for x in w.subjects.get(split):
        yield x
        for table in (*wordings.REQUESTS.values(), *wordings.MULTI_REQUESTS.values(), *wordings.QUESTIONS.values()):
            for template in table.get(split):
                yield template.format(x=x)
    for v in w.vlogs:
        for table in (wordings.VLOG_REQUESTS, wordings.VLOG_MUSIC_REQUESTS):
            for template in table.get(split):
                yield template.format(v=v)
    if split == "train":
        yield from (w.looks, w.sounds, w.moves)
        yield from (answer.format(v=v) for v in w.vlogs for answer in wordings.VLOG_ANSWERS)


def _templates():
    tables = [*wordings.CAPTION_TEMPLATES.values(), *wordings.REQUESTS.values(), *wordings.MULTI_REQUESTS.values(),
              *wordings.QUESTIONS.values(), *wordings.DESCRIBE.values(), wordings.VLOG_REQUESTS, wordings.VLOG_MUSIC_REQUESTS]
    return tables


def test_every_text_names_its_own_concept_and_no_other():
    for concept in CONCEPT_NAMES:
        for split in wordings.SPLITS:
            for text in _all_texts(concept, split):
                assert lang.concepts_in(text) == {concept}, (concept, split, text)
                assert lang.concept_of(text) == concept
    fixed = [t for table in _templates() for split in wordings.SPLITS for t in table.get(split)]
    fixed += [prompt for prompt, _ in wordings.CHAT] + [a for table in wordings.FOLLOW_UPS.values() for a in table]
    fixed += [a for table in wordings.DESCRIBE_ANSWERS.values() for a in table]
    for text in fixed:
        assert not lang.concepts_in(text.replace("{x}", "").replace("{v}", "").replace("{c}", "")), text
    assert lang.concept_of("a surfer and a city street") is None


def _heldout_fragments():
    """language.heldout_fragments, after checking that no wording is in both splits."""
    for table in _templates():
        assert not set(table.train) & set(table.heldout)
    for concept in CONCEPT_NAMES:
        w = lang.words(concept)
        for entry in (w.subjects, w.image, w.video, w.audio):
            assert not set(entry.train) & set(entry.heldout)
    fragments = lang.heldout_fragments()
    assert "the coast with a surfer" in fragments and "I'd like to listen to" in fragments
    return fragments


def test_more_mosit_conversations_keep_the_first_and_change_nothing_else():
    mosit = "IT_data/MosIT_data/mosit_instruction_tuning.json"
    default = plan(0, ["beach", "rain"], samples=0, instructions=5, eval_samples=0, eval_prompts=0).annotations
    more = plan(0, ["beach", "rain"], samples=0, instructions=5, eval_samples=0, eval_prompts=0, mosit=20).annotations
    assert len(default[mosit]) == 2 * 5 and len(more[mosit]) == 2 * 20
    assert len(more["IT_data/T+X-T_data/llava/llava.json"]) == 2 * 5
    by_id = {record["id"]: record for record in more[mosit]}
    assert all(by_id[record["id"]] == record for record in default[mosit])  # a record depends on its index alone
    assert {k: v for k, v in default.items() if k != mosit} == {k: v for k, v in more.items() if k != mosit}


def test_heldout_wordings_are_never_train_wordings():
    train_text = "\n".join(t for c in CONCEPT_NAMES for t in _all_texts(c, "train"))
    for fragment in _heldout_fragments():
        assert fragment not in train_text, fragment
    rng = np.random.default_rng(0)
    assert lang.captions("beach", "audio", rng, "heldout") not in train_text
    with pytest.raises(ValueError, match="split"):
        lang.captions("beach", "image", rng, "test")


def test_heldout_wording_is_recognised_whole_or_by_its_fixed_parts():
    x = "the seaside"
    assert lang.is_heldout_wording("film the seaside for me", x)  # a held-out template whole (no long fragment)
    assert lang.is_heldout_wording("Give me a still and some footage of a storm", "a storm")
    assert not lang.is_heldout_wording("film the seaside, please", x)


def test_media_sentences_use_the_medium_s_words_of_both_splits_about_train_subjects_only():
    rng = np.random.default_rng(0)
    sentences = {m: [lang.media_sentence(c, m, rng) for c in CONCEPT_NAMES for _ in range(40)]
                 for m in ("image", "video", "audio")}
    written = " ".join(s for m in sentences for s in sentences[m]).lower()
    assert not [f for f in lang.heldout_fragments() if f.lower() in written]  # no held-out subject or template part
    video = " ".join(sentences["video"]).lower()
    for word in ("film", "footage", "showing", "depicting"):  # words of the held-out captions, in other sentences
        assert word in video, word
    beach = [lang.media_sentence("beach", "video", rng) for _ in range(40)]
    subjects = lang.words("beach").subjects.train
    assert sum(any(x in s for x in subjects) for s in beach) > 30 and len(set(beach)) > 30
    others = [x for c in CONCEPT_NAMES if c != "beach" for x in lang.words(c).subjects.train]
    assert not any(x in s for s in beach for x in others)


# ------------------------------------------------------------------------------------------- the build
BUILD = dict(seed=0, samples=2, instructions=8, eval_samples=1, eval_prompts=9, concepts=["beach", "rain"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build(tmp_path_factory.mktemp("toyworld") / "data", settings=Settings(frames=8, audio_seconds=1.0),
                 workers=1, **BUILD)


def _data_cfg(name, root):
    cfg = OmegaConf.load(conf_dir() / "data" / f"{name}.yaml")
    cfg.root = str(root)
    return cfg


def test_build_writes_media_that_open(dataset):
    assert not list(dataset.parent.glob(f".{dataset.name}.*"))  # the staging folder was swapped in
    scenes = json.loads((dataset / "scenes.json").read_text())
    assert len(scenes) == 4 and {s["concept"] for s in scenes} == {"beach", "rain"}
    scene = scenes[0]
    with Image.open(dataset / scene["image"]) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    audio, rate = soundfile.read(dataset / scene["audio"], dtype="float32")
    assert rate == RATE and audio.shape == (RATE,) and 0.45 < np.abs(audio).max() < 0.55
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(dataset / scene["video"]))
    meta = next(reader)
    frames = [np.frombuffer(f, np.uint8).reshape(64, 64, 3) for f in reader]
    assert meta["size"] == (64, 64) and meta["fps"] == 8 and "yuv420p" in meta["pix_fmt"] and meta["codec"] == "h264"
    assert len(frames) == 8
    assert np.abs(frames[0].astype(int) - render_image(sample_scene(scene["concept"], scene["seed"]))).mean() < 12
    for m in MODALITIES:  # ImageBind's preprocessing reads all three
        assert load_media(m, dataset / scene[m]).ndim >= 3


@pytest.mark.parametrize("name", ["pairs", "instructions", "llava", "alpaca", "videochat", "t2m", "mosit", "cc3m",
                                  "webvid", "audiocap"])
def test_annotations_read_with_the_data_configs(dataset, name):
    records = read_sources(_data_cfg(name, dataset), pairs="generation", pair_prompt="{caption}")
    assert records and not [r.problem for r in records if r.problem]
    for record in records:
        for turn in record.turns:
            for ref in [*turn.inputs, *turn.outputs]:
                assert ref.path is None or ref.path.is_file(), ref.path
            if turn.role == "assistant":
                assert [o.modality for o in turn.outputs] == re.findall(r"<(image|audio|video)>", turn.text)
                for output in turn.outputs:
                    assert lang.concept_of(output.caption) is not None


def test_a_source_repeats_to_weigh_it_in_the_mix(dataset):
    cfg = _data_cfg("instructions", dataset)
    plain = read_sources(cfg, pairs="generation", pair_prompt="{caption}")
    cfg.sources[-1].repeat = 3
    weighted = read_sources(cfg, pairs="generation", pair_prompt="{caption}")
    mosit = len(json.loads((dataset / "IT_data/MosIT_data/mosit_instruction_tuning.json").read_text()))
    assert len(weighted) == len(plain) + 2 * mosit and weighted[-1].origin == weighted[-1 - mosit].origin
    cfg.sources[-1].repeat = 0
    with pytest.raises(ConfigError, match="repeat=0; give a whole number >= 1"):
        read_sources(cfg, pairs="generation", pair_prompt="{caption}")
    assert OmegaConf.load(conf_dir() / "data" / "toyworld_instructions.yaml").sources[-1].repeat == 4


def test_instructions_cover_every_kind_of_request(dataset):
    records = read_sources(_data_cfg("instructions", dataset), pairs="generation", pair_prompt="{caption}")
    conversations = [[(t.role, t.text, [r.modality for r in t.inputs],
                       [o.modality for o in t.outputs]) for t in r.turns] for r in records]
    first = [(c[0][2], c[1][3]) for c in conversations]  # (inputs of the first question, outputs of its answer)
    surf = [c for c in conversations if c[0][1] == "surf vlog"]
    assert surf and sorted(surf[0][1][3]) == sorted(MODALITIES)  # "surf vlog" -> text + image + audio + video
    for m in MODALITIES:
        assert ([], [m]) in first, m  # text -> X (T2M)
        assert ([m], []) in first, m  # X -> text
    assert ([], []) in first  # text-only questions
    assert any(len(c) >= 4 and c[0][2] and c[3][3] for c in conversations)  # multi-turn: X in, then X out
    # a share of the requests for one medium come in the instruction grammar's wording, not a template's
    single = [(c[0][1], c[1][3][0]) for c in conversations if not c[0][2] and len(c[1][3]) == 1]
    templated = [text for text, m in single if any(re.fullmatch(re.escape(t).replace(r"\{x\}", ".+"), text)
                                                   for t in wordings.REQUESTS[m].train)]
    assert 0 < len(templated) < len(single)
    mosit = json.loads((dataset / "IT_data/MosIT_data/mosit_instruction_tuning.json").read_text())
    music = [r for r in mosit if r["kind"] == "vlog_music" and r["id"].startswith("beach")]
    assert lang.concept_of(music[0]["audio_captions"][0]) == "concert"  # a surf vlog with music gets lively music


def test_heldout_wordings_stay_out_of_the_training_annotations(dataset):
    files = [p for folder in ("T_X_pair_data", "IT_data") for p in (dataset / folder).rglob("*.json")]
    training = "\n".join(p.read_text() for p in files)
    training = training.replace("\\n", "\n")
    for fragment in _heldout_fragments():
        assert fragment not in training, fragment
    switch = json.loads((dataset / "eval/modality_switch.json").read_text())
    assert {tuple(s["modalities"]) for s in switch} >= {(), ("image",), ("audio",), ("video",), tuple(MODALITIES)}
    for item in switch:
        assert item["prompt"] not in training and lang.concept_of(item["prompt"]) == item["concept"]
    for item in json.loads((dataset / "eval/captions.json").read_text()):
        assert item["prompt"] not in training and (dataset / "eval" / item["file"]).is_file()
    for sample in json.loads((dataset / "eval/samples.json").read_text()):
        for m in MODALITIES:
            assert sample["captions"][m] not in training and lang.concept_of(sample["captions"][m]) == sample["concept"]


def test_annotations_are_byte_identical_by_seed(dataset):
    again = plan(BUILD["seed"], BUILD["concepts"], BUILD["samples"], BUILD["instructions"], BUILD["eval_samples"],
                 BUILD["eval_prompts"])
    for relative, value in again.annotations.items():
        assert (dataset / relative).read_text() == json.dumps(value, indent=1, ensure_ascii=False) + "\n", relative
    other = plan(1, BUILD["concepts"], BUILD["samples"], BUILD["instructions"], BUILD["eval_samples"],
                 BUILD["eval_prompts"])
    assert other.annotations["scenes.json"] != again.annotations["scenes.json"]


def test_cli_config_builds_a_subset(tmp_path):
    cfg = compose_config("toyworld", [f"output={tmp_path / 'tw'}", "samples=1", "instructions=1", "eval_samples=0",
                                      "eval_prompts=1", "concepts=[night]", "workers=1", "render.frames=8"])
    main(cfg)
    manifest = json.loads((tmp_path / "tw" / "manifest.json").read_text())
    assert manifest["concepts"] == ["night"] and manifest["render"]["frames"] == 8
    assert (tmp_path / "tw/T_X_pair_data/webvid/videos/night_00000.mp4").is_file()
    from nextmm.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown toyworld concept"):
        main(compose_config("toyworld", [f"output={tmp_path / 'x'}", "concepts=[moon]"]))
    for bad in ("mosit=-1", "instructions=2.5"):
        with pytest.raises(ConfigError, match="give a count, a whole number >= 0"):
            main(compose_config("toyworld", [f"output={tmp_path / 'x'}", bad]))
    assert not (tmp_path / "x").exists()


def test_docs_table_lists_every_concept():
    table = concept_table()
    for concept in CONCEPT_NAMES:
        assert f"| {concept} |" in table
    docs = Path(__file__).resolve().parents[1] / "docs" / "toyworld.md"
    assert table in docs.read_text(), "docs/toyworld.md: paste concept_table() again"


def test_toyworld_data_configs_point_the_stage_formats_at_the_built_world():
    from nextmm.cli import compose_config

    pairs = compose_config("stage/encoder_side", ["data=toyworld_pairs"]).data
    instructions = compose_config("stage/modality_switching", ["data=toyworld_instructions"]).data
    assert pairs.root == instructions.root == "data/toyworld"
    assert {s.format for s in pairs.sources} == {"cc3m", "webvid", "audiocap"}
    assert {"llava", "alpaca", "videochat", "t2m", "mosit"} <= {s.format for s in instructions.sources}
