"""The LLM pretraining recipe: the toyworld corpus, the tokenizer, a few steps, and the folder it writes."""

import json
import math
import re

import pytest
import torch
from accelerate import Accelerator
from omegaconf import OmegaConf
from transformers import AutoTokenizer, LlamaForCausalLM

from nextmm import cli
from nextmm.errors import ConfigError
from nextmm.inference.claims import claimed_media
from nextmm.model import NextMM
from nextmm.parts.llm import added_tokens, build_llm, build_tokenizer
from nextmm.toyworld import concept_of, pretrain_llm, wordings
from nextmm.toyworld.build import plan
from nextmm.toyworld.concepts import CONCEPT_NAMES
from nextmm.toyworld.corpus import (
    INSTRUCTION_KINDS,
    INSTRUCTIONS,
    NARRATIVES,
    OUTSIDE,
    corpus_documents,
    corpus_text,
    instruction,
    stand_in,
    strip_media,
)
from nextmm.toyworld.language import heldout_fragments
from nextmm.toyworld.word_vectors import llama_tokenizer, word_vectors
from nextmm.toyworld.wordings import WORDS

SIGNALS = {"image": 4, "audio": 8, "video": 24}
SMALL = ["architecture.intermediate_size=64", "architecture.num_hidden_layers=1", "architecture.num_attention_heads=2",
         "architecture.num_key_value_heads=2", "train.batch_size=2", "train.seq_len=32", "logging.every=1"]


def _annotations_only(root, manifest=None, **counts):
    """A toyworld folder with the annotations only: text is all the corpus reads."""
    the_plan = plan(0, list(CONCEPT_NAMES), samples=2, eval_samples=1, eval_prompts=6, **counts)
    for relative, value in the_plan.annotations.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(json.dumps(value), encoding="utf-8")
    (root / "manifest.json").write_text(json.dumps(manifest or {}), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _annotations_only(tmp_path_factory.mktemp("toyworld"), instructions=8)


@pytest.fixture(scope="module")
def texts(world):
    return list(corpus_text(corpus_documents(world)))


@pytest.fixture(scope="module")
def tokenizer():
    return llama_tokenizer()


def test_corpus_is_the_worlds_conversations_then_general_text(world, texts):
    conversations, general = texts[:-len(CONCEPT_NAMES) * NARRATIVES], texts[-len(CONCEPT_NAMES) * NARRATIVES:]
    assert len(conversations) > 100
    assert any("### Human: surf vlog\n### Assistant: " in text for text in conversations)
    assert all(text.startswith("### Human: ") and text.endswith("\n###\n") for text in conversations)
    assert not any("###" in text for text in general)
    assert not any(marker in text for text in texts for marker in ("<image>", "<audio>", "<video>"))
    held_out = json.loads((world / "eval/modality_switch.json").read_text())
    assert not any(record["prompt"] in text for record in held_out for text in texts)
    everything = "\n".join(texts)
    assert not [fragment for fragment in heldout_fragments() if fragment in everything]
    # held-out media words are known language, used where the train words go
    assert all(any(word in text for text in general) for word in (" sketch", " footage", " listen to", " record"))


def test_corpus_reads_as_many_mosit_conversations_as_of_every_other_set(tmp_path):
    # a world with 4 x 8 MosIT conversations per concept: the corpus reads the first 8 of each concept, so the LLM
    # reads what it reads of the world without the extra ones (a manifest without "mosit": a world from before)
    more = _annotations_only(tmp_path / "more", {"instructions": 8, "mosit": 32}, instructions=8, mosit=32)
    as_many = _annotations_only(tmp_path / "as_many", instructions=8)
    unmarked = _annotations_only(tmp_path / "unmarked", instructions=8, mosit=32)
    assert corpus_documents(more) == corpus_documents(as_many)
    assert len(corpus_documents(unmarked)) - len(corpus_documents(more)) == len(CONCEPT_NAMES) * 24


def test_instruction_conversations_answer_as_people_are_answered(texts):
    for concept in ("beach", "city"):
        kinds = {}
        for index in range(2 * len(INSTRUCTION_KINDS)):
            document = instruction(concept, index)
            assert instruction(concept, index) == document  # by seed
            text = "".join(document)
            kind = INSTRUCTION_KINDS[index % len(INSTRUCTION_KINDS)]
            answers = re.findall(r"### Assistant: (.*?)\n###", text)
            if kind == "question":
                assert answers[0] in (WORDS[concept].looks, WORDS[concept].sounds, WORDS[concept].moves)
            elif kind == "describe":
                assert text.startswith("### Human: <Img> ") and concept_of(answers[0]) == concept
            elif kind == "cross":
                assert text.startswith("### Human: <Img> ") and len(claimed_media(answers[0])) == 1
            elif kind == "follow_up":
                assert len(answers) == 2 and all(len(claimed_media(a)) == 1 for a in answers)
            elif kind == "vlog":
                assert claimed_media(answers[0]) == ["image", "audio", "video"]
            elif kind == "music":
                assert claimed_media(answers[0]) == ["audio"] and "music" in answers[0]
            else:
                assert sorted(claimed_media(answers[0])) == sorted(kind) and concept_of(answers[0]) == concept
            kinds[kind] = kinds.get(kind, 0) + 1
        assert set(kinds) == set(INSTRUCTION_KINDS)
    # in the corpus, between the world's conversations and the general text
    first = "".join(instruction("beach", 0))
    assert first in texts and texts.index(first) < len(texts) - len(CONCEPT_NAMES) * NARRATIVES
    assert sum(text.startswith("### Human: ") for text in texts) > len(CONCEPT_NAMES) * INSTRUCTIONS + OUTSIDE
    outside_world = [t for t in texts if "I can't make that" in t]
    assert len(outside_world) >= OUTSIDE // 2 and not any("<Img>" in t for t in outside_world)


def test_every_word_of_the_heldout_wording_is_known_language(texts):
    """Held-out prompts are new phrasing, never new words: each of their words is in the corpus, or in a train
    wording (which a full-size world's annotations all use; this small world draws only some)."""
    tables = [*wordings.CAPTION_TEMPLATES.values(), *wordings.REQUESTS.values(), *wordings.MULTI_REQUESTS.values(),
              *wordings.QUESTIONS.values(), *wordings.DESCRIBE.values(), wordings.VLOG_REQUESTS, wordings.VLOG_MUSIC_REQUESTS]
    entries = [entry for w in WORDS.values() for entry in (w.subjects, w.image, w.video, w.audio)]

    def wording(split):
        return [re.sub(r"\{[a-z]\}", "", t) for table in tables for t in table.get(split)] + [
            text for entry in entries for text in entry.get(split)]

    known = set(re.findall(r"[a-z']+", "\n".join([*texts, *wording("train")]).lower()))
    heldout = wording("heldout")
    unknown = {word for text in heldout for word in re.findall(r"[a-z']+", text.lower())} - known
    assert not unknown, sorted(unknown)
    assert "illustrate" in known and "downpour" in known  # a lone template word and a held-out phrase's word


def test_input_media_read_as_a_stand_in_word_of_their_concept(texts):
    pairs = [t for t in texts if t.startswith("### Human: <Img> ") and "briefly.\n### Assistant: " in t]
    assert len(pairs) >= 3 * 2 * len(CONCEPT_NAMES)
    for text in pairs:
        word, caption = re.fullmatch(r"### Human: <Img> (\w+)</Img>Describe this \w+ briefly\.\n"
                                     r"### Assistant: (.*)\n###\n", text, re.S).groups()
        assert concept_of(word) == concept_of(caption) is not None
    assert any(t.startswith("### Human: <Img> ") and "What" in t for t in texts)  # LLaVA-style questions too
    assert stand_in("beach_00003.png") == stand_in("beach_00003.png") in WORDS["beach"].keywords
    with pytest.raises(ConfigError, match="<concept>_<index>"):
        stand_in("lake_00001.png")


def test_strip_media():
    assert strip_media("Here is a picture of the sea <image>.") == "Here is a picture of the sea."
    assert strip_media("<image>\nDescribe this image.") == "Describe this image."
    assert strip_media("A picture <image>, a sound <audio> and a clip <video>.") == "A picture, a sound and a clip."


def test_the_tokenizer_is_vicunas_and_round_trips(tokenizer, texts, tmp_path):
    assert len(tokenizer) == 32002 and tokenizer.convert_tokens_to_ids(["<unk>", "<s>", "</s>"]) == [0, 1, 2]
    assert tokenizer.convert_tokens_to_ids(["<Img>", "</Img>"]) == [32000, 32001]  # as in NExT-GPT's release
    assert tokenizer("surf", add_special_tokens=False).input_ids == [1190, 29888]  # Llama-2's ids: "▁sur", "f"
    ids = tokenizer("<Img> surf</Img>", add_special_tokens=False).input_ids
    assert (ids[0], ids[-1]) == (32000, 32001) and 32000 not in tokenizer(" <Img ", add_special_tokens=False).input_ids
    samples = [t for t in texts[::37] if "<Img>" not in t] + ["surf vlog", "Ünïcode and 42 digits  twice spaced\n\ttab"]
    for text in samples:
        ids = tokenizer(text).input_ids
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids  # byte fallback
        assert tokenizer.decode(ids[1:]) == text
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(samples[0]).input_ids == tokenizer(samples[0]).input_ids
    extended = build_tokenizer({"tokenizer": str(tmp_path)}, SIGNALS)
    assert len(extended) == len(tokenizer) + len(added_tokens(SIGNALS)) - 2  # the markers were there already
    assert extended.convert_tokens_to_ids("[IMG0]") == 32002
    # a message's first word is the token it is mid-sentence, as with Llama's sentencepiece
    assert tokenizer("surf vlog").input_ids[1:] == tokenizer("a surf vlog").input_ids[2:]


def test_the_embedding_starts_as_the_word_vectors_and_only_the_corpus_rows_change(tokenizer):
    vectors = word_vectors()
    assert vectors.shape == (32000, 256)
    photo, picture, cat = (vectors[tokenizer.convert_tokens_to_ids(w)] for w in ("▁photo", "▁picture", "▁cat"))
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(photo, picture, dim=0) > 0.6 > cosine(photo, cat, dim=0)  # synonyms are neighbours
    architecture = {"hidden_size": 256, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "num_key_value_heads": 2, "max_position_embeddings": 64}
    model = pretrain_llm.build_model(architecture, tokenizer, vectors, norm=1.0, seed=0)
    weight = model.get_input_embeddings().weight
    assert weight is model.get_output_embeddings().weight  # tied
    assert torch.allclose(weight[:32000].norm(dim=1).mean(), torch.tensor(1.0))
    assert torch.allclose(torch.nn.functional.normalize(weight[:32000], dim=1),
                          torch.nn.functional.normalize(vectors, dim=1), atol=1e-6)
    stream = torch.tensor([1, 278, 25695, 2, 1, 278, 7205, 2])  # "<s> the beach </s> <s> the sea </s>"
    shortlist = pretrain_llm.Shortlist(stream, vocab_size=len(tokenizer), width=256)
    cfg = OmegaConf.create({"embeddings": {"lr": 0}, "optimizer": {"lr": 1e-3, "betas": [0.9, 0.95],
                                                                   "weight_decay": 0.1}})
    optimizer = pretrain_llm.build_optimizer(model, shortlist, cfg)
    assert not weight.requires_grad and not shortlist.delta.requires_grad and len(optimizer.param_groups) == 1
    cfg.embeddings.lr = 1e-5
    groups = pretrain_llm.build_optimizer(model, shortlist, cfg).param_groups
    assert not weight.requires_grad and groups[1]["params"] == [shortlist.delta] and groups[1]["lr"] == 1e-5
    # the shortlist's rows change through the delta, merged once before saving; every other row stays the vector
    with torch.no_grad():
        shortlist.delta.add_(0.5)
    before = weight.detach().clone()
    assert torch.equal(shortlist.embed(weight, stream), before[stream] + 0.5)
    shortlist.merge(weight)
    changed = (weight != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == [1, 2, 278, 7205, 25695] and not shortlist.delta.any()
    assert len(shortlist.suppressed(len(tokenizer))) == len(tokenizer) - 5
    with pytest.raises(ConfigError, match="hidden_size"):
        pretrain_llm.build_model({**architecture, "hidden_size": 32}, tokenizer, vectors, norm=1.0, seed=0)
    cfg.embeddings.lr = -1
    with pytest.raises(ConfigError, match="embeddings.lr"):
        pretrain_llm.build_optimizer(model, shortlist, cfg)


def test_a_few_steps_write_an_llm_folder_nextmm_loads(world, tmp_path):
    out = tmp_path / "run"
    argv = [f"data_root={world}", f"output_dir={out}", "train.max_steps=3", *SMALL]
    with pytest.raises(SystemExit) as exit_:
        cli.run("stage/pretrain_llm", pretrain_llm.main, argv)
    assert exit_.value.code == 0
    folder = out / "llm"
    # the run's .hydra/, log and checkpoints, and no staging folder left behind
    assert sorted(p.name for p in out.iterdir()) == [".hydra", "checkpoints", "llm", "pretrain_llm.log"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000003"]
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["dtype"]) == (256, 1, "float16")
    # the model emits only the tokens of its training text: every other id is suppressed in generation
    suppressed = set(json.loads((folder / "generation_config.json").read_text())["suppress_tokens"])
    corpus_ids = set(llama_tokenizer()("".join(list(corpus_text(corpus_documents(world)))[:50])).input_ids)
    assert 1000 < len(suppressed) < 32000 and not suppressed & corpus_ids - {1}

    model = NextMM.from_config("tiny", overrides=[f"llm.path={folder}", f"llm.tokenizer={folder}"])
    assert model.tokenizer.model_max_length == 512
    assert len(model.tokenizer) == config["vocab_size"] + len(added_tokens(model.config.signal_tokens)) - 2
    reference = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    loaded = model.llm.get_base_model().model.layers[0].mlp.down_proj.weight
    assert torch.equal(loaded, reference.model.layers[0].mlp.down_proj.weight)
    assert model.llm.generation_config.suppress_tokens == sorted(suppressed)

    cfg = OmegaConf.to_container(NextMM.from_config("tiny", empty=True).config.llm)
    llm = build_llm({**cfg, "path": str(folder)}, len(model.tokenizer), [0])
    assert llm.config.vocab_size == len(model.tokenizer)


def test_a_killed_run_resumes_to_the_uninterrupted_model(texts, tokenizer, tmp_path, kill):
    stream = pretrain_llm.token_stream([[line] for line in texts[:4]], tokenizer)
    architecture = {"hidden_size": 256, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "num_key_value_heads": 2, "max_position_embeddings": 64}
    vectors = word_vectors()

    def run(out, resume=False):
        cfg = OmegaConf.create({
            "output_dir": str(out), "resume": resume, "checkpoint": {"every": 2, "keep_last": 2},
            "train": {"max_steps": 4, "batch_size": 2, "seq_len": 16}, "embeddings": {"lr": 1e-2},
            "optimizer": {"lr": 1e-2, "betas": [0.9, 0.95], "weight_decay": 0.1, "warmup_steps": 2,
                          "schedule": "cosine", "total_steps": None, "max_grad_norm": 1.0},
            "logging": {"every": 10},
        })
        model = pretrain_llm.build_model(architecture, tokenizer, vectors, norm=1.0, seed=0)
        shortlist = pretrain_llm.Shortlist(stream, vocab_size=len(tokenizer), width=256)
        result = pretrain_llm.train_next_token(Accelerator(cpu=True), model, stream, shortlist, cfg,
                                               torch.Generator().manual_seed(0))
        return result, {**model.state_dict(), "delta": shortlist.delta.detach().clone()}

    straight, expected = run(tmp_path / "straight")
    kill.after(3)  # step 3 done, its checkpoint not written: the resumed run redoes it from step 2's
    with pytest.raises(kill.error):
        run(tmp_path / "killed")
    resumed, weights = run(tmp_path / "killed", resume=True)
    assert len(resumed["losses"]) == 2 and resumed["run_losses"] == straight["losses"]
    assert expected["delta"].any() and weights.keys() == expected.keys()
    assert all(torch.equal(weights[name], expected[name]) for name in expected)


def test_a_short_overfit_makes_the_loss_fall(texts, tokenizer, tmp_path):
    torch.manual_seed(0)
    documents = [[line] for line in texts[:4]]
    stream = pretrain_llm.token_stream(documents, tokenizer)
    shortlist = pretrain_llm.Shortlist(stream, vocab_size=len(tokenizer), width=256)
    assert shortlist.ids.tolist() == sorted(set(stream.tolist()))
    cfg = OmegaConf.create({
        "train": {"max_steps": 40, "batch_size": 4, "seq_len": 32},
        "embeddings": {"lr": 0},
        "optimizer": {"lr": 1e-2, "betas": [0.9, 0.95], "weight_decay": 0.0, "warmup_steps": 5,
                      "schedule": "cosine", "total_steps": None, "max_grad_norm": 1.0},
        "logging": {"every": 10},
        "output_dir": str(tmp_path), "resume": False, "checkpoint": {"every": 1000, "keep_last": 1},
    })
    architecture = {"hidden_size": 256, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "num_key_value_heads": 2, "max_position_embeddings": 64}
    model = pretrain_llm.build_model(architecture, tokenizer, word_vectors(), norm=1.0, seed=0)
    frozen = model.get_input_embeddings().weight.clone()
    accelerator = Accelerator(cpu=True)
    losses = pretrain_llm.train_next_token(accelerator, model, stream, shortlist, cfg,
                                           torch.Generator().manual_seed(0))["losses"]
    assert math.isfinite(losses[-1]) and sum(losses[-5:]) / 5 < 0.4 * losses[0]
    assert pretrain_llm.validation_loss(model, stream, shortlist, 32) < 0.4 * losses[0]
    assert torch.equal(model.get_input_embeddings().weight, frozen) and not shortlist.delta.any()  # embeddings.lr 0
