import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures.commands import run_command
from PIL import Image

from nextmm.modality import MODALITIES
from nextmm.toyworld import CONCEPT_NAMES, concept_of, wordings
from nextmm.toyworld.build import build, plan
from nextmm.toyworld.eval import (
    SECTIONS,
    EvalSet,
    accuracy_by,
    captioning,
    main,
    modality_switch,
    names_concept,
    nearest,
    output_kind,
    passed,
    people,
    people_records,
    retrieval_scores,
    same_outputs,
    subset,
    text_to_x,
    text_to_x_prompts,
)

CONCEPTS = ["beach", "city"]
FAST = ["model=tiny", "quiet=true", "limit=2", "max_new_tokens=4", "num_inference_steps=1"]


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The held-out part alone of a two-concept world: one scene per concept, every kind of switch prompt."""
    return build(tmp_path_factory.mktemp("eval") / "world", samples=0, instructions=0, eval_samples=1,
                 eval_prompts=10, concepts=CONCEPTS, workers=1, progress=False)


@pytest.fixture(scope="session")
def eval_set(world):
    return EvalSet.load(world)


def run_cli(argv, capsys):
    return run_command("eval", main, argv, capsys)


# ------------------------------------------------------------------------------------------- the command
def test_cli_prints_one_json_object_with_every_section(world, tmp_path, capsys):
    output = tmp_path / "scores" / "eval.json"
    code, out, err = run_cli([f"data_root={world}", f"output={output}", *FAST], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert set(SECTIONS) <= set(result) and result["model"] == "tiny" and result["data"] == str(world)
    assert set(result["retrieval"]) == {f"{a}->{b}" for m in MODALITIES for a, b in (("text", m), (m, "text"))}
    assert "overall" in result["captioning"] and "overall" in result["modality_switch"]
    for section in SECTIONS:
        assert result[section] and result["items"][section] == 2
        assert result["passed"][section] is passed(section, result[section]), section  # the verdict of these scores
    assert all(0 < result["targets"][s] < 1 for s in SECTIONS if s != "people")
    assert result["targets"]["people"]["media"] == 0.9 and "claims_missing" in result["people"]
    assert json.loads(output.read_text()) == result


def test_without_data_root_the_held_out_set_is_rendered(capsys):
    argv = ["sections=[modality_switch]", "world.eval_samples=1", "world.eval_prompts=1", "world.workers=1", *FAST]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["data"].startswith("rendered: seed=0") and set(result["passed"]) == {"modality_switch"}


@pytest.mark.parametrize(
    "override, message",
    [("data_root={missing}", "holds no toyworld eval set"), ("sections=[speed]", "sections="),
     ("limit=0", "limit=")],
    ids=["bad-data-root", "unknown-section", "zero-limit"],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, override, message):
    code, out, err = run_cli([override.format(missing=tmp_path / "nowhere"), "quiet=true"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_the_eval_only_build_writes_the_same_held_out_set_as_a_full_one(world):
    eval_only, full = plan(0, CONCEPTS, 0, 0, 1, 10), plan(0, CONCEPTS, 3, 2, 1, 10)
    held_out = [k for k in full.annotations if k.startswith("eval/")]
    assert len(held_out) == 4 and all(eval_only.annotations[k] == full.annotations[k] for k in held_out)
    assert len(list((world / "eval").rglob("*.png"))) == len(CONCEPTS)
    assert not list((world / "T_X_pair_data").rglob("*.png"))


# ----------------------------------------------------------------------------------------------- metrics
def test_retrieval_is_perfect_when_embeddings_match_and_zero_when_they_swap():
    labels = torch.tensor([0, 0, 1, 2])
    generator = torch.Generator().manual_seed(0)
    media = {m: torch.eye(3)[labels] + 0.1 * torch.rand(4, 3, generator=generator) for m in MODALITIES}
    texts = {m: torch.eye(3)[labels] + 0.1 * torch.rand(4, 3, generator=generator) for m in MODALITIES}
    assert set(retrieval_scores(media, texts, labels).values()) == {1.0}
    swapped = {m: torch.eye(3)[(labels + 1) % 3] for m in MODALITIES}
    assert set(retrieval_scores(media, swapped, labels).values()) == {0.0}


class StubModel:
    """Answers from a table instead of an LLM; records how it was asked."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def chat(self, prompt, **kwargs):
        self.calls.append((prompt, kwargs))
        return self.answer(prompt, kwargs)


def test_captioning_counts_an_answer_that_names_the_right_concept(eval_set):
    # every answer talks about the sea: right for the beach's media, wrong for the city's
    model = StubModel(lambda prompt, kwargs: SimpleNamespace(text="It shows a surfer on the waves.", signals=[]))
    scores = captioning(model, eval_set, progress=False)
    assert scores == {"image": 0.5, "audio": 0.5, "video": 0.5, "overall": 0.5}
    _, kwargs = model.calls[0]
    assert kwargs["render"] is False and kwargs["temperature"] == 0.0
    (files,) = [kwargs[key] for key in ("images", "audios", "videos") if key in kwargs]
    assert files[0].is_file()
    assert names_concept("a city street", "city") and not names_concept("the sea by the city", "city")
    assert not names_concept("nothing at all", "city")


def test_modality_switch_needs_exactly_the_expected_set(eval_set):
    def answer(prompt, kwargs):  # right, in another order, except one extra audio for every image request
        expected = next(r["modalities"] for r in eval_set.modality_switch if r["prompt"] == prompt)
        extra = ["audio"] if expected == ["image"] else []
        return SimpleNamespace(text="", signals=list(reversed(expected)) + extra)

    model = StubModel(answer)
    scores = modality_switch(model, eval_set, progress=False)
    assert scores["image"] == 0.0 and scores["text"] == 1.0 and scores["image+audio+video"] == 1.0
    assert scores["overall"] == pytest.approx(1 - 2 / 20)
    assert all(kwargs["render"] is False for _, kwargs in model.calls)
    assert same_outputs(["video", "image"], ["image", "video"]) and not same_outputs(["image"], [])
    assert output_kind([]) == "text" and output_kind(["video", "image"]) == "image+video"


class StubEncoder:
    """One-hot concept embeddings: captions by the concept they name, media as the stub model last set."""

    def __init__(self):
        self.next = None

    def encode_captions(self, texts):
        return torch.stack([torch.eye(len(CONCEPTS))[CONCEPTS.index(concept_of(t))] for t in texts])

    def __call__(self, modality, data):
        assert data.shape[0] == 1
        return self.next[None]


def test_text_to_x_counts_media_nearest_to_their_own_concept(eval_set):
    encoder = StubEncoder()
    media = {"image": Image.new("RGB", (64, 64)), "audio": np.zeros(16000, np.float32),
             "video": np.zeros((8, 32, 32, 3), np.uint8)}

    def answer(prompt, kwargs):  # every medium comes out as the beach: right for beach prompts only
        encoder.next = torch.eye(len(CONCEPTS))[CONCEPTS.index("beach")]
        return SimpleNamespace(media=lambda modality: [media[modality]], sample_rate=16000, fps=8)

    model = StubModel(answer)
    model.encoder = encoder
    prompts = text_to_x_prompts(CONCEPTS, 2)
    assert text_to_x(model, eval_set, prompts, progress=False) == {m: 0.5 for m in MODALITIES}
    assert [kwargs["outputs"] for _, kwargs in model.calls] == [[p["modality"]] for p in prompts]


def test_text_to_x_prompts_are_held_out_requests_naming_their_concept():
    prompts = text_to_x_prompts(CONCEPT_NAMES, 2)
    assert len(prompts) == len(CONCEPT_NAMES) * 3 * 2 and prompts == text_to_x_prompts(CONCEPT_NAMES, 2)
    three = text_to_x_prompts(CONCEPT_NAMES, 3)  # the default: each held-out template once per concept and medium
    for concept in CONCEPT_NAMES:
        for m in MODALITIES:
            asked = [p["prompt"] for p in three if (p["concept"], p["modality"]) == (concept, m)]
            assert sorted(next(t for t in wordings.REQUESTS[m].heldout if _fits(t, a)) for a in asked) == sorted(
                wordings.REQUESTS[m].heldout)
    for item in prompts:
        assert concept_of(item["prompt"]) == item["concept"]
        templates = wordings.REQUESTS[item["modality"]]
        assert any(_fits(t, item["prompt"]) for t in templates.heldout)
        assert not any(_fits(t, item["prompt"]) for t in templates.train)


def _fits(template: str, text: str) -> bool:
    before, after = template.split("{x}")
    return text.startswith(before) and text.endswith(after)


class StubConversation:
    """A conversation whose answers come from a table: prompt -> (text, signals, forced, place of the media)."""

    def __init__(self, table, calls):
        self.table, self.calls = table, calls

    def say(self, prompt, **kwargs):
        self.calls.append((prompt, kwargs))
        text, signals, forced, place = self.table[prompt]
        return SimpleNamespace(text=text, signals=signals, forced=forced,
                               media=lambda m: [place] if m in signals and kwargs["render"] else [])


def test_people_scores_media_places_words_and_claims(eval_set):
    records = [
        {"kind": "request", "prompt": "beach pic", "before": None, "input": None, "media": ["image"], "place": "beach"},
        {"kind": "request", "prompt": "city clip", "before": None, "input": None, "media": ["video"], "place": "city"},
        {"kind": "vlog", "prompt": "beach vlog", "before": None, "input": None, "media": list(MODALITIES),
         "place": "beach"},
        {"kind": "x_to_y", "prompt": "sound for this", "before": None, "input": {"modality": "image", "place": "city"},
         "media": ["audio"], "place": "city"},
        {"kind": "describe", "prompt": "what is this?", "before": None, "input": {"modality": "audio", "place": "city"},
         "media": [], "place": "city"},
        {"kind": "question", "prompt": "what does the beach sound like?", "before": None, "input": None, "media": [],
         "place": "beach"},
        {"kind": "unknown", "prompt": "draw a cat", "before": None, "input": None, "media": [], "place": None},
        {"kind": "followup", "prompt": "now a video", "before": "beach pic", "input": None, "media": ["video"],
         "place": "beach"},
    ]
    table = {
        "beach pic": ("Here is a picture of the beach.", ["image"], [], "beach"),
        "city clip": ("Here is a video of the city.", ["video"], [], "beach"),  # the clip shows the wrong place
        "beach vlog": ("Here is your surf vlog.", list(MODALITIES), ["video"], "beach"),  # the LLM forgot the video
        "sound for this": ("Here is the sound of the city.", ["audio"], [], "city"),
        "what is this?": ("Traffic in the city.", [], [], None),
        "what does the beach sound like?": ("Here is the sound of the beach.", ["audio"], [], "beach"),
        "draw a cat": ("I can't make that: I only know the beach, the city and the rain.", [], [], None),
        "now a video": ("Here is a video of the beach.", ["video"], [], "beach"),
    }
    calls = []
    model = SimpleNamespace(conversation=lambda **settings: StubConversation(table, calls))
    scores = people(model, eval_set, records, lambda modality, medium: medium, progress=False)
    assert scores["media"] == 7 / 8 and scores["media_llm"] == 6 / 8  # the question got a sound
    assert scores["media_and_place"] == 4 / 5 and scores["requests"] == 0.5 and scores["vlogs"] == 1.0
    assert scores["x_to_y"] == scores["x_to_text"] == scores["unknown"] == scores["followup"] == 1.0
    assert scores["questions"] == 0.0 and scores["vlog_places"] == 1.0 and scores["chat"] is None
    assert scores["claims_missing"] == 0.0 and scores["claims_added"] == 1 / 8
    assert scores["overall"] == 6 / 8
    asked = dict(calls[:-2])  # the follow-up's two messages come last
    assert asked["beach pic"]["render"] and not asked["what is this?"]["render"]
    assert asked["what is this?"]["audios"][0].is_file()  # a held-out scene of the attachment's place
    assert [prompt for prompt, _ in calls].index("now a video") == len(calls) - 1
    assert calls[-2][0] == "beach pic" and calls[-2][1]["render"] is False  # the earlier message, not rendered
    assert not passed("people", scores)


def test_the_people_file_holds_well_formed_records_of_every_kind():
    records = people_records()
    assert len(records) >= 300
    kinds = {r["kind"] for r in records}
    assert kinds == {"request", "question", "chat", "unknown", "describe", "x_to_y", "vlog", "followup"}
    for r in records:
        assert set(r) == {"kind", "prompt", "before", "input", "media", "place"} and r["prompt"].strip()
        assert set(r["media"]) <= set(MODALITIES) and (r["place"] is None or r["place"] in CONCEPT_NAMES)
        assert (r["input"] is not None) == (r["kind"] in ("describe", "x_to_y"))
        assert bool(r["before"]) == (r["kind"] == "followup")
    assert {r["place"] for r in records if r["kind"] == "vlog"} == set(CONCEPT_NAMES)


def test_nearest_subset_accuracy_and_passing():
    keys = torch.eye(3)
    assert nearest(torch.tensor([[0.1, 0.9, 0.0], [1.0, 0.0, 0.2]]), keys, ["a", "b", "c"]) == ["b", "a"]
    items = [{"concept": c, "i": i} for c in ("a", "b", "c") for i in range(4)]
    assert subset(items, None) == items
    assert sorted(item["concept"] for item in subset(items, 3)) == ["a", "b", "c"]
    assert subset(items, 5, seed=1) == subset(items, 5, seed=1)
    assert accuracy_by([("x", True), ("y", False), ("x", False)]) == {"x": 0.5, "y": 0.0, "overall": 1 / 3}
    assert passed("captioning", {"image": 0.1, "overall": 0.95})
    assert not passed("text_to_x", {"image": 0.9, "audio": 0.7, "video": 0.9})
    assert not passed("retrieval", {"text->image": 0.95, "image->text": 0.85})


# ------------------------------------------------------------------------------------------- the library
def test_render_false_stops_after_the_llm(tiny_model):
    turn = tiny_model.chat("surf vlog", outputs=["image", "audio"], max_new_tokens=3, render=False, progress=False)
    assert sorted(turn.signals) == ["audio", "image"] and turn.outputs == [] and not turn.images and not turn.audios
    assert not any(key.startswith("decode") for key in turn.timings_s)
    rendered = tiny_model.chat("surf vlog", outputs=["image"], max_new_tokens=3, num_inference_steps=1,
                               progress=False)
    assert rendered.signals == ["image"] and rendered.outputs == [("image", 0)] and len(rendered.images) == 1
