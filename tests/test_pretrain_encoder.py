"""The encoder pretraining recipe: InfoNCE and R@1, what trains, caption ids, a short run, and that it learns."""

import math
import re
from pathlib import Path

import pytest
import torch

from nextmm import cli
from nextmm.cli import compose_config
from nextmm.parts.encoder import ImageBindEncoder, text_token_ids
from nextmm.toyworld import Settings, pretrain_encoder
from nextmm.toyworld.build import build
from nextmm.toyworld.concepts import CONCEPT_NAMES
from nextmm.training.contrastive import InfoNCE, retrieval_at_1

ROOT = Path(__file__).resolve().parents[1]


def recipe():
    return pretrain_encoder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """2 concepts x 2 training scenes, 1 held-out scene each; short media."""
    return build(tmp_path_factory.mktemp("toyworld") / "data", samples=2, instructions=0, eval_samples=1,
                 eval_prompts=0, concepts=["beach", "night"], settings=Settings(frames=8, audio_seconds=1.0),
                 workers=1)


def config(world, out, *extra):
    return compose_config("stage/pretrain_encoder", [
        f"data_root={world}", f"output_dir={out}", "data.num_workers=0", "data.video_clips=1",
        "train.batch_size=2", "logging.every=1000", *extra,
    ])


# InfoNCE and R@1

def test_aligned_embeddings_give_low_loss_and_perfect_retrieval():
    torch.manual_seed(0)
    a = torch.randn(8, 16)
    loss = InfoNCE(temperature=0.05, learnable=False)
    aligned = loss(a, a + 0.01 * torch.randn(8, 16))
    shuffled = loss(a, a[torch.randperm(8)])
    assert aligned < 0.05
    assert shuffled > aligned + 1.0
    assert retrieval_at_1(a, a) == 1.0
    assert retrieval_at_1(a, a.roll(1, dims=0)) == 0.0


def test_labels_make_same_concept_rows_positives():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    loss = InfoNCE(temperature=0.01, learnable=False)
    # rows 0 and 1 are identical: as instances they cannot be told apart, as a concept they are right, so
    # the loss sits at its floor, the entropy of the targets (log 2: two positives per row)
    assert loss(a, a, labels) == pytest.approx(math.log(2), abs=1e-3)
    assert loss(a, a.flip(0), labels) > 50  # every row closest to the other concept
    b = a[[1, 0, 3, 2]]
    assert retrieval_at_1(a, b, labels, labels) == 1.0
    assert retrieval_at_1(a, b, labels, 1 - labels) == 0.0


def test_temperature_learns_only_when_asked():
    assert InfoNCE(0.07, learnable=True).log_scale.requires_grad
    assert not InfoNCE(0.07, learnable=False).log_scale.requires_grad
    assert InfoNCE(0.07).temperature == pytest.approx(0.07)
    with pytest.raises(ValueError):
        InfoNCE(0.07)(torch.zeros(2, 3), torch.zeros(3, 3))


# what trains, caption ids

def test_trainable_towers_are_exactly_the_named_ones():
    model = ImageBindEncoder.from_config(compose_config("stage/pretrain_encoder", []).encoder).model
    names = recipe().set_trainable_towers(model, ["text", "vision", "audio"])
    assert {n.split(".")[1] for n in names} == {"text", "vision", "audio"}
    frozen = {n.split(".")[1] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"depth", "thermal", "imu"}


def test_caption_ids_end_with_the_argmax_end_token():
    ids = text_token_ids(["waves crash on the shore", "sea " * 100])
    assert ids.shape == (2, 77) and ids[0, 0] == 49406
    end = int(ids[0].argmax())  # how ImageBind finds the end token
    assert ids[0, end] == 49407 and (ids[0, end + 1:] == 0).all()
    assert ids[1, -1] == 49407 and int(ids[1].argmax()) == 76  # a cut text still ends with its end token


# the recipe

def test_three_steps_write_a_checkpoint_the_encoder_loads(world, tmp_path):
    cfg = config(world, tmp_path / "run", "train.max_steps=3")
    result = recipe().train(cfg)
    assert len(result["losses"]) == 3 and all(torch.isfinite(torch.tensor(result["losses"])))
    assert set(result["retrieval"]) == {f"{a}->{b}" for m in ("image", "audio", "video")
                                        for a, b in (("text", m), (m, "text"))}
    checkpoint = tmp_path / "run" / "imagebind.pth"
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "retrieval.json").is_file()
    assert not list((tmp_path / "run").glob(".*")), "no temporary files left behind"
    encoder = ImageBindEncoder.from_config({**cfg.encoder, "checkpoint": str(checkpoint)})
    saved = torch.load(checkpoint, weights_only=True)
    assert torch.equal(encoder.model.state_dict()["modality_heads.vision.2.weight"], saved["modality_heads.vision.2.weight"])
    fresh = ImageBindEncoder.from_config(cfg.encoder).model.state_dict()
    assert not torch.equal(fresh["modality_heads.vision.2.weight"], saved["modality_heads.vision.2.weight"])
    assert torch.equal(fresh["modality_heads.depth.2.weight"], saved["modality_heads.depth.2.weight"])


def test_a_killed_run_resumes_to_the_uninterrupted_encoder(world, tmp_path, kill):
    """With word dropout, general text and a DataLoader worker, whose draws are seeded by each scene's place."""
    extra = ["train.max_steps=4", "checkpoint.every=2", "data.word_dropout=0.3", "data.general_text=0.5",
             "data.num_workers=1"]
    straight = recipe().train(config(world, tmp_path / "straight", *extra))
    kill.after(3)
    with pytest.raises(kill.error):
        recipe().train(config(world, tmp_path / "killed", *extra))
    resumed = recipe().train(config(world, tmp_path / "killed", *extra, "resume=true"))
    assert len(resumed["losses"]) == 2 and resumed["run_losses"] == straight["losses"]
    assert resumed["retrieval"] == straight["retrieval"]
    weights = [torch.load(out / "imagebind.pth", weights_only=True) for out in (tmp_path / "straight", tmp_path / "killed")]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


def test_word_dropout_leaves_out_words_in_order_and_keeps_one():
    drop_words = recipe().drop_words
    caption = "a photo of ocean waves rolling onto a sandy beach"
    assert drop_words(caption, 0.0) == caption
    torch.manual_seed(0)
    kept = [drop_words(caption, 0.3).split() for _ in range(200)]
    words = caption.split()
    for k in kept:  # a subsequence of the caption's words, never empty
        rest = iter(words)
        assert k and all(w in rest for w in k), k
    fraction = sum(map(len, kept)) / (len(words) * len(kept))
    assert 0.6 < fraction < 0.8  # about 1 - 0.3
    assert {drop_words("beach", 0.9) for _ in range(20)} == {"beach"}  # one word is always kept


def test_general_text_replaces_that_share_of_captions_with_the_concept_s_sentences(world):
    from nextmm.toyworld import language as lang
    from nextmm.toyworld import wordings

    scenes, _ = recipe().load_scenes(world)
    scene = scenes[0]
    concepts = sorted({s["concept"] for s in scenes})
    plain = recipe().SceneDataset(scenes, world, concepts)
    assert {plain.text(scene, "audio") for _ in range(20)} == {scene["captions"]["audio"]}
    mixed = recipe().SceneDataset(scenes, world, concepts, general_text=0.5)
    torch.manual_seed(0)
    texts = [mixed.text(scene, "audio") for _ in range(400)]
    general = set(recipe().general_sentences(scene["concept"], "audio"))
    words = lang.words(scene["concept"])
    assert {words.sounds, *wordings.GLOSSARY[scene["concept"]], wordings.ALT_TEXT[scene["concept"]]} == general
    assert set(texts) & general == general
    assert 0.4 < sum(t != scene["captions"]["audio"] for t in texts) / len(texts) < 0.6
    # the rest of the general text: new sentences in the audio words about one of the concept's subjects
    fresh = [t for t in texts if t not in general | {scene["captions"]["audio"]}]
    assert 0.05 < len(fresh) / len(texts) < 0.2  # a share of 1 / (len(general) + 1) of the general text
    assert len(set(fresh)) > len(fresh) / 2
    audio_nouns = wordings.MEDIA_WORDS["audio"][1]
    assert all(any(x in t for x in words.subjects.train) or any(n in t.lower() for n in audio_nouns) for t in fresh)
    assert not any(n in t.lower() for t in fresh for n in wordings.MEDIA_WORDS["video"][1] if n not in audio_nouns)
    # general text is training text: no held-out phrase or template part is in it
    every = " ".join(t.lower() for c in CONCEPT_NAMES for m in ("image", "audio", "video")
                     for t in recipe().general_sentences(c, m))
    assert not [f for f in lang.heldout_fragments() if f.lower() in every]


def test_every_concept_word_of_the_heldout_phrases_is_in_the_encoder_s_training_text_of_its_concept():
    """The text tower meets each keyword of a held-out scene's phrase ("sundown", "drizzle") in training text of
    that concept (a caption or general text), as a real ImageBind's has met every English word: a word it never
    read keeps its random embedding. Held-out caption templates ("a snapshot showing {x}") stay unread."""
    from nextmm.toyworld import language as lang

    media = ("image", "audio", "video")
    for concept in CONCEPT_NAMES:
        words = lang.words(concept)
        training = [text for m in media
                    for text in (*getattr(words, m).train, *recipe().general_sentences(concept, m))]
        known = set(re.findall(r"[a-z]+", " ".join(training).lower()))
        heldout = {word for m in media for phrase in getattr(words, m).heldout
                   for word in re.findall(r"[a-z]+", phrase)}
        missing = (heldout & set(words.keywords)) - known
        assert not missing, (concept, sorted(missing))


def test_general_text_from_picks_the_parts_of_the_general_text(world):
    from nextmm.toyworld import language as lang
    from nextmm.toyworld import wordings

    scenes, _ = recipe().load_scenes(world)
    scene, words = scenes[0], lang.words(scenes[0]["concept"])
    glossary = wordings.GLOSSARY[scene["concept"]]
    parts = ["glossary", "description"]  # in any order: the sentences come in GENERAL_TEXT's
    assert recipe().general_sentences(scene["concept"], "video", parts) == (words.moves, *glossary)
    assert recipe().general_sentences(scene["concept"], "video", ["media_sentences"]) == ()
    concepts = sorted({s["concept"] for s in scenes})
    # without media sentences: only the fixed sentences, each of them drawn
    fixed = recipe().SceneDataset(scenes, world, concepts, general_text=0.99,
                                  general_text_from=["description", "glossary"])
    torch.manual_seed(0)
    assert {fixed.text(scene, "video") for _ in range(100)} <= {words.moves, *glossary, scene["captions"]["video"]}
    # media sentences only: each text a new sentence about one of the concept's subjects
    fresh = recipe().SceneDataset(scenes, world, concepts, general_text=0.99, general_text_from=["media_sentences"])
    texts = [fresh.text(scene, "video") for _ in range(100)]
    assert len(set(texts)) > 50 and not {words.moves, *glossary} & set(texts)


@pytest.mark.parametrize(("override", "message"), [
    ("data.general_text_from=[glossary,web]", r"unknown parts \['web'\]; name some of \['description', "),
    ("data.general_text_from=[]", r"data.general_text=0.2 but data.general_text_from is empty"),
])
def test_unknown_or_no_general_text_parts_are_a_config_error(world, tmp_path, override, message):
    from nextmm.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        recipe().train(config(world, tmp_path / "run", "data.general_text=0.2", override))


def test_word_dropout_outside_0_1_is_a_config_error(world, tmp_path):
    from nextmm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.word_dropout=1.0: give a probability in \[0, 1\)"):
        recipe().train(config(world, tmp_path / "run", "data.word_dropout=1.0"))


def test_too_few_scenes_for_a_batch_is_a_config_error(world, tmp_path):
    from nextmm.errors import ConfigError

    with pytest.raises(ConfigError, match="fewer than train.batch_size"):
        recipe().train(config(world, tmp_path / "run", "train.batch_size=64"))


def test_missing_data_root_is_one_line_and_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.run("stage/pretrain_encoder", recipe().main, argv=[f"output_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert "set data_root=" in capsys.readouterr().err


@pytest.mark.slow
def test_loss_falls_when_overfitting_four_scenes(world):
    """30 steps on one batch of 2 concepts x 2 scenes: the summed InfoNCE falls clearly."""
    module = recipe()
    cfg = config(world, "unused")
    train_scenes, _ = module.load_scenes(world)
    dataset = module.SceneDataset(train_scenes, world, ["beach", "night"], video_clips=1)
    torch.manual_seed(0)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    model = ImageBindEncoder.from_config(cfg.encoder).model
    module.set_trainable_towers(model, list(cfg.trainable))
    model.train()
    loss_fn = InfoNCE(cfg.loss.temperature, learnable=True)
    params = [p for p in [*model.parameters(), *loss_fn.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    losses = []
    for _ in range(30):
        terms = module.contrastive_loss(model, loss_fn, batch, list(cfg.pairs), by_concept=True)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(float(terms["loss"].detach()))
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
