import json
import shutil

import numpy as np
import pytest
import torch
from fixtures.benchmark import (
    TinyImageFeatures,
    save_tiny_audio_classifier,
    save_tiny_clip,
    write_audiocaps,
    write_coco,
    write_msrvtt,
)
from fixtures.commands import run_command
from torch import nn

from nextmm.benchmark import metrics
from nextmm.benchmark.datasets import load_items, pick
from nextmm.benchmark.features import clip
from nextmm.benchmark.metrics import GenerationScores, caption_scores
from nextmm.benchmark.run import load_task, main, markdown, task_names

TASKS = {  # task -> (data set, its metrics, the protocol keys shrunk for the tiny model)
    "coco_text_to_image": ("coco", {"fid", "clip_score"}, ["height=32", "width=32", "num_inference_steps=1"]),
    "audiocaps_text_to_audio": ("audiocaps", {"fd", "inception_score", "inception_score_std"},
                                ["seconds=1", "num_inference_steps=1"]),
    "msrvtt_text_to_video": ("msrvtt", {"fid", "clipsim"},
                             ["height=32", "width=32", "num_frames=4", "num_inference_steps=1"]),
    "coco_captioning": ("coco", {"bleu_4", "meteor", "cider"}, []),
    "audiocaps_captioning": ("audiocaps", {"cider", "spice", "spider"}, []),
    "msrvtt_captioning": ("msrvtt", {"bleu_4", "meteor"}, []),
}
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="no `java` on PATH: the COCO caption "
                                "evaluation's PTB tokenizer, METEOR and SPICE run on Java")


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark")
    return {"coco": write_coco(root / "coco"), "audiocaps": write_audiocaps(root / "audiocaps"),
            "msrvtt": write_msrvtt(root / "msrvtt"), "clip": save_tiny_clip(root / "clip"),
            "audio": save_tiny_audio_classifier(root / "ast")}


def run_cli(argv, capsys):
    return run_command("benchmark", main, argv, capsys)


def tiny_argv(sets, task, output):
    data, _, protocol = TASKS[task]
    return [f"task={task}", f"data_root={sets[data]}", "model=tiny", "limit=2", "quiet=true", f"output={output}",
            "features.image._target_=fixtures.benchmark.tiny_image_features", f"features.clip.path={sets['clip']}",
            # AST through the documented switch (PANNs, the default, is tested in tests/test_benchmark_panns.py)
            "features.audio._target_=nextmm.benchmark.features.AudioClassifier", f"features.audio.path={sets['audio']}",
            *(f"protocol.{p}" for p in protocol)]


# ------------------------------------------------------------------------------------------- the command
@pytest.mark.slow
@pytest.mark.parametrize("task", [pytest.param(t, marks=needs_java) if t.endswith("captioning") else t for t in TASKS])
def test_each_task_runs_end_to_end_on_its_real_format(sets, task, tmp_path, capsys):
    output = tmp_path / "results.json"
    code, out, err = run_cli(tiny_argv(sets, task, output), capsys)
    assert code == 0, err
    entry = json.loads(output.read_text())[task]
    assert set(entry["metrics"]) == TASKS[task][1]
    assert entry["model"] == "tiny" and entry["protocol"]["samples"] == 2 and entry["protocol"]["limit"] == 2
    assert entry["protocol"]["seed"] == 0 and entry["versions"]["torchmetrics"] and entry["versions"]["pycocoevalcap"]
    assert all(value is None or np.isfinite(value) for value in entry["metrics"].values())
    if task == "audiocaps_captioning" and entry["metrics"]["spice"] is None:  # no CoreNLP here: said, not made up
        assert "get_stanford_models" in entry["unavailable"]["spice"] and entry["metrics"]["spider"] is None
    table = output.with_suffix(".md").read_text()
    assert "| metric | NExT-GPT (paper) | nextmm |" in table and entry["table"] in table


def test_tasks_share_one_json_and_the_markdown_lists_each(sets, tmp_path, capsys):
    output = tmp_path / "results.json"
    for task in ("coco_text_to_image", "audiocaps_text_to_audio"):
        code, _, err = run_cli(tiny_argv(sets, task, output), capsys)
        assert code == 0, err
    results = json.loads(output.read_text())
    assert list(results) == ["coco_text_to_image", "audiocaps_text_to_audio"]
    assert results["coco_text_to_image"]["protocol"]["changed"] == ["height", "width", "num_inference_steps"]
    assert markdown(results).count("| metric |") == 2


@pytest.mark.parametrize("override, message", [
    ("task=speed", "unknown task 'speed'"),
    ("data_root={missing}", "is not a folder"),
    ("features.clip.path={missing}", "features.clip.path="),
    ("features.image._target_=nextmm.benchmark.features.inception", "features.image.weights="),
    ("protocol.seconds=3", "protocol.seconds: this task pins no seconds"),
    ("limit=0", "limit=0"),
], ids=["unknown-task", "missing-data", "missing-clip", "missing-inception", "foreign-key", "zero-limit"])
def test_user_errors_are_one_line_exit_2(sets, tmp_path, capsys, override, message):
    argv = tiny_argv(sets, "coco_text_to_image", tmp_path / "r.json")
    if override.startswith("features.image"):
        argv.append(f"features.image.weights={tmp_path / 'pt_inception.pth'}")
    key = override.partition("=")[0]
    argv = [a for a in argv if not a.startswith(f"{key}=")] + [override.format(missing=tmp_path / "nowhere")]
    code, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_every_shipped_task_loads_with_a_pinned_protocol():
    assert set(task_names()) == set(TASKS)
    for name in TASKS:
        task = load_task(name)
        assert task.seed == 0 and ("{caption}" in task.prompt or task.kind == "x_to_text"), name
        assert set(task.paper) == set(task.metrics), name  # a paper cell for every metric measured


# ---------------------------------------------------------------------------------------------- readers
def test_readers_group_captions_per_medium_and_keep_the_split(sets):
    audio = load_items(sets["audiocaps"], {"format": "audiocaps", "annotations": "test.csv", "media": "audio",
                                           "file_name": "{youtube_id}.wav"})
    assert len(audio) == 4 and audio[0].captions[1].endswith("loudly") and audio[0].media.is_file()
    video = load_items(sets["msrvtt"], {"format": "msrvtt", "annotations": "test_videodatainfo.json",
                                        "media": "TestVideo", "split": "test"})
    assert [v.id for v in video] == [f"video{7010 + i}" for i in range(4)]  # the train video is left out
    coco = load_items(sets["coco"], {"format": "coco", "annotations": "annotations/captions_val2014.json",
                                     "media": "val2014"})
    assert len(coco) == 4 and len(coco[2].captions) == 2 and coco[2].media.is_file()
    assert pick(coco, 2, seed=0) == pick(coco, 2, seed=0) and len(pick(coco, 2, seed=0)) == 2


# ------------------------------------------------------------------------------------------ known values
def images(seed):
    return torch.randint(0, 256, (6, 3, 16, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_fid_of_identical_sets_is_zero_and_of_different_sets_is_not():
    same = GenerationScores({"fid": {}}, {"image": TinyImageFeatures()}, torch.device("cpu"))
    same.update(images(0), images(0), "a caption")
    assert abs(same.compute()["fid"]) < 1e-4
    other = GenerationScores({"fid": {}}, {"image": TinyImageFeatures()}, torch.device("cpu"))
    other.update(images(0) // 2, images(1), "a caption")
    assert other.compute()["fid"] > 0.01


class Logits(nn.Module):
    """A stand-in audio network whose logits are given: "logits" -> (N, C)."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.sizes = logits, {"embedding": 2, "logits": logits.shape[1]}

    def forward(self, waveforms, output):
        return self.logits[: len(waveforms)]


def test_inception_score_is_the_number_of_equally_used_classes_and_1_for_one_class():
    confident = GenerationScores({"inception_score": {"splits": 1}}, {"audio": Logits(50 * torch.eye(4))},
                                 torch.device("cpu"))
    confident.update(torch.zeros(4, 10), None, "")
    assert confident.compute()["inception_score"] == pytest.approx(4.0, rel=1e-4)
    one_class = GenerationScores({"inception_score": {"splits": 1}}, {"audio": Logits(torch.ones(4, 4))},
                                 torch.device("cpu"))
    one_class.update(torch.zeros(4, 10), None, "")
    assert one_class.compute()["inception_score"] == pytest.approx(1.0, abs=1e-6)


def test_clipsim_is_clip_score_as_a_cosine(sets):
    networks = {"clip": clip(str(sets["clip"]))}
    frames = images(2)
    scores = GenerationScores({"clip_score": {}, "clipsim": {}}, networks, torch.device("cpu"))
    scores.update(frames, None, "a red square")
    result = scores.compute()
    assert 0 < result["clipsim"] <= 1 and result["clipsim"] == pytest.approx(result["clip_score"] / 100)


@needs_java
def test_caption_metrics_of_identical_captions_have_their_known_values():
    references = {"1": ["a man rides a red bicycle down the street"], "2": ["two dogs play with a ball on grass"]}
    perfect, _ = caption_scores(references, {k: v[0] for k, v in references.items()}, ["bleu_4", "meteor", "cider"])
    # BLEU-4 of a candidate equal to its only reference is 1; METEOR is 1 for one chunk; CIDEr-D is 10 (the mean
    # cosine of n-gram tf-idf vectors, 1, times 10) when no n-gram is in every image's references
    assert perfect["bleu_4"] == pytest.approx(1.0, abs=1e-6) and perfect["meteor"] == pytest.approx(1.0, abs=1e-3)
    assert perfect["cider"] == pytest.approx(10.0, abs=1e-6)
    swapped, _ = caption_scores(references, {"1": references["2"][0], "2": references["1"][0]}, ["bleu_4", "cider"])
    assert swapped["bleu_4"] < 0.01 and swapped["cider"] < 0.5


@needs_java
def test_spider_is_unavailable_with_the_reason_when_spice_cannot_run(monkeypatch):
    monkeypatch.setattr(metrics, "spice_missing", lambda: "SPICE needs Stanford CoreNLP: run get_stanford_models")
    references = {"1": ["a dog barks twice"], "2": ["rain falls on a roof"]}
    scores, unavailable = caption_scores(references, {"1": "a dog barks", "2": "rain on a roof"}, ["cider", "spider"])
    assert scores["spider"] is None and scores["spice"] is None and scores["cider"] > 0
    assert "get_stanford_models" in unavailable["spider"]
