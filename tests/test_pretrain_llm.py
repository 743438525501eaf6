"""The LLM pretraining recipe: the toyworld corpus, the tokenizer, a few steps, and the folder it writes."""

import json
import math
import re

import pretrain_llm
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoTokenizer, LlamaForCausalLM

from nextmm import cli
from nextmm.errors import ConfigError
from nextmm.llm import added_tokens, build_llm, build_tokenizer
from nextmm.model import NextMM
from nextmm.toyworld.build import plan
from nextmm.toyworld.concepts import CONCEPT_NAMES
from nextmm.toyworld import concept_of
from nextmm.toyworld.corpus import (INSTRUCTION_KINDS, INSTRUCTIONS, NARRATIVES, corpus_documents, corpus_text,
                                    instruction, render, stand_in, strip_media)
from nextmm.toyworld import language as lang
from nextmm.toyworld.language import WORDS, heldout_fragments

SIGNALS = {"image": 4, "audio": 8, "video": 24}
SMALL = ["architecture.hidden_size=32", "architecture.intermediate_size=64", "architecture.num_hidden_layers=1",
         "architecture.num_attention_heads=2", "architecture.num_key_value_heads=2", "train.batch_size=2",
         "train.seq_len=32", "tokenizer.vocab_size=400", "logging.every=1"]


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
def tokenizer(texts):
    return pretrain_llm.train_tokenizer(texts, vocab_size=400)


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


def test_instruction_conversations_answer_with_the_media_asked_for(texts):
    for concept in ("beach", "city"):
        kinds = {}
        for index in range(2 * len(INSTRUCTION_KINDS)):
            request, answer = instruction(concept, index)
            assert instruction(concept, index) == [request, answer]  # by seed
            kind = INSTRUCTION_KINDS[index % len(INSTRUCTION_KINDS)]
            media = re.findall(r"<(image|audio|video)>", answer)
            if kind in ("vlog", "vlog_music"):
                assert "vlog" in request and media == ["image", "audio", "video"]
                assert (" with " in request) == (kind == "vlog_music")
            elif isinstance(kind, str):  # a question: text only, the concept's sentence on the topic
                assert media == [] and answer == getattr(WORDS[concept], kind)
            else:
                assert sorted(media) == sorted(kind) and concept_of(request) == concept
            kinds[kind] = kinds.get(kind, 0) + 1
        assert set(kinds) == set(INSTRUCTION_KINDS)
    # in the corpus, between the world's conversations and the general text, without the placeholders
    first = "".join(render(instruction("beach", 0)))
    assert first in texts and texts.index(first) < len(texts) - len(CONCEPT_NAMES) * NARRATIVES
    assert sum(text.startswith("### Human: ") for text in texts) > len(CONCEPT_NAMES) * INSTRUCTIONS


def test_every_word_of_the_heldout_wording_is_known_language(texts):
    """Held-out prompts are new phrasing, never new words: each of their words is in the corpus, or in a train
    wording (which a full-size world's annotations all use; this small world draws only some)."""
    tables = [*lang.CAPTION_TEMPLATES.values(), *lang.REQUESTS.values(), *lang.MULTI_REQUESTS.values(),
              *lang.QUESTIONS.values(), *lang.DESCRIBE.values(), lang.VLOG_REQUESTS, lang.VLOG_MUSIC_REQUESTS]
    entries = [entry for w in WORDS.values() for entry in (w.subjects, w.image, w.video, w.audio)]

    def wordings(split):
        return [re.sub(r"\{[a-z]\}", "", t) for table in tables for t in table.get(split)] + [
            text for entry in entries for text in entry.get(split)]

    known = set(re.findall(r"[a-z']+", "\n".join([*texts, *wordings("train")]).lower()))
    heldout = wordings("heldout")
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


def test_tokenizer_round_trips_and_reloads(tokenizer, texts, tmp_path):
    assert tokenizer.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<Img>", "</Img>"]) == [0, 1, 2, 3, 4]
    ids = tokenizer("<Img> surf</Img>", add_special_tokens=False).input_ids
    assert (ids[0], ids[-1]) == (3, 4) and 3 not in tokenizer(" <Img ", add_special_tokens=False).input_ids
    # whole texts (the pipeline tokenizes piece by piece; after a marker the next piece gets its own space)
    samples = [t for t in texts[::37] if "<Img>" not in t] + ["surf vlog", "Ünïcode and 42 digits  twice spaced\n\ttab"]
    for text in samples:
        ids = tokenizer(text).input_ids
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids[1:]) == " " + text  # Llama's leading space; the media markers are kept
    tokenizer.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(samples[0]).input_ids == tokenizer(samples[0]).input_ids
    extended = build_tokenizer({"tokenizer": str(tmp_path)}, SIGNALS)
    assert len(extended) == len(tokenizer) + len(added_tokens(SIGNALS)) - 2  # the markers were there already
    assert extended.decode(extended(samples[0]).input_ids[1:]) == " " + samples[0]
    # a message's first word is the token it is mid-sentence, as with Llama's sentencepiece
    assert tokenizer("surf vlog").input_ids[1:] == tokenizer("a surf vlog").input_ids[2:]


def test_a_few_steps_write_an_llm_folder_nextmm_loads(world, tmp_path):
    out = tmp_path / "run"
    argv = [f"data_root={world}", f"output_dir={out}", "train.max_steps=3", *SMALL]
    with pytest.raises(SystemExit) as exit_:
        cli.run("stage/pretrain_llm", pretrain_llm.main, argv)
    assert exit_.value.code == 0
    folder = out / "llm"
    assert sorted(p.name for p in out.iterdir()) == ["llm"]  # no staging folder left behind
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (32, 1)

    model = NextMM.from_config("tiny", overrides=[f"llm.path={folder}", f"llm.tokenizer={folder}"])
    assert model.tokenizer.model_max_length == 512
    assert len(model.tokenizer) == config["vocab_size"] + len(added_tokens(model.config.signal_tokens)) - 2
    reference = LlamaForCausalLM.from_pretrained(folder)
    loaded = model.llm.get_base_model().model.layers[0].mlp.down_proj.weight
    assert torch.equal(loaded, reference.model.layers[0].mlp.down_proj.weight)

    cfg = OmegaConf.to_container(NextMM.from_config("tiny", empty=True).config.llm)
    llm = build_llm({**cfg, "path": str(folder)}, len(model.tokenizer), [0])
    assert llm.config.vocab_size == len(model.tokenizer)


def test_a_short_overfit_makes_the_loss_fall(texts):
    torch.manual_seed(0)
    lines = texts[:4]
    tokenizer = pretrain_llm.train_tokenizer(lines, vocab_size=300, min_frequency=1)
    stream = pretrain_llm.token_stream([[line] for line in lines], tokenizer)
    cfg = OmegaConf.create({
        "train": {"max_steps": 40, "batch_size": 4, "seq_len": 32},
        "optimizer": {"lr": 1e-2, "betas": [0.9, 0.95], "weight_decay": 0.0, "warmup_steps": 5,
                      "schedule": "cosine", "total_steps": None, "max_grad_norm": 1.0},
        "logging": {"every": 10},
    })
    architecture = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                    "num_key_value_heads": 2, "max_position_embeddings": 64}
    model = pretrain_llm.build_model(architecture, tokenizer)
    losses = pretrain_llm.fit(model, stream, cfg, torch.Generator().manual_seed(0))
    assert math.isfinite(losses[-1]) and sum(losses[-5:]) / 5 < 0.4 * losses[0]
    assert pretrain_llm.evaluate(model, stream, 32) < 0.4 * losses[0]
