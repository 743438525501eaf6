"""NExT-GPT's annotation formats -> prompt segments with preprocessed media; bad samples; the resumable stream."""

import itertools
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nextmm.config import conf_dir
from nextmm.data import BatchStream, Example, Skipped, build_dataset, collate
from nextmm.data.dataset import ConversationDataset, around_outputs
from nextmm.data.decoder_media import DecoderMediaSpec, load_decoder_media
from nextmm.data.loader import ShardStream
from nextmm.data.records import Source, load_annotations, read_source
from nextmm.errors import ConfigError, MediaError
from nextmm.inference.prompt import Media, Text
from nextmm.modality import MODALITIES
from nextmm.parts.llm import added_tokens, build_tokenizer
from nextmm.toyworld.word_vectors import llama_tokenizer

SIGNALS = {"image": 4, "audio": 8, "video": 24}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(OmegaConf.load(conf_dir() / "model" / "tiny.yaml").llm, SIGNALS)


def data_cfg(name, root, max_length=256):
    cfg = OmegaConf.load(conf_dir() / "data" / f"{name}.yaml")
    cfg.root, cfg.max_length = str(root), max_length
    return cfg


def dataset(name, root, tokenizer, pairs="comprehension", **kwargs):
    cfg = data_cfg(name, root, kwargs.pop("max_length", 256))
    return build_dataset(cfg, tokenizer=tokenizer, signal_counts=SIGNALS, pairs=pairs,
                         pair_prompt="Describe this {modality}.", **kwargs)


def texts(example):
    return [(s.text, s.train) for s in example.segments if isinstance(s, Text)]


def test_caption_pairs_read_both_ways(root, tokenizer):
    seen = dataset("cc3m", root, tokenizer, pairs="comprehension")[0]
    assert [s.modality for s in seen.segments if isinstance(s, Media)] == ["image"]
    assert next(s for s in seen.segments if isinstance(s, Media)).data.shape == (3, 224, 224)
    assert ("a red square\n###", True) in texts(seen) and seen.outputs == []

    made = dataset("cc3m", root, tokenizer, pairs="generation")[0]
    assert not any(isinstance(s, Media) for s in made.segments)
    assert ("[IMG0][IMG1][IMG2][IMG3]\n###", True) in texts(made)
    assert [(o.modality, o.caption) for o in made.outputs] == [("image", "a red square")]


def test_pair_sets_mix_modalities_and_preprocess_each_for_imagebind(root, tokenizer):
    data = dataset("pairs", root, tokenizer)
    batch = collate([data[i] for i in range(len(data))])
    shapes = {s.modality: tuple(s.data.shape) for segments in batch.segments for s in segments if isinstance(s, Media)}
    assert shapes == {"image": (3, 224, 224), "video": (15, 3, 2, 224, 224), "audio": (3, 1, 128, 204)}
    assert len(batch) == 8 and not batch.skipped


def test_jsonl_annotations_read_like_json(root, tmp_path):
    records = json.loads((root / "T_X_pair_data" / "cc3m" / "cc3m.json").read_text())
    lines = tmp_path / "cc3m.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert load_annotations(lines) == records


def test_instruction_formats(root, tokenizer):
    data = dataset("instructions", root, tokenizer, pairs="generation")
    by_origin = {data.records[i].origin: data[i] for i in range(len(data))}
    assert not any(isinstance(e, Skipped) for e in by_origin.values())

    llava = by_origin["llava.json#0"]  # two rounds, the image in the first question, both answers trained
    assert [s.modality for s in llava.segments if isinstance(s, Media)] == ["image"]
    assert [t for t, train in texts(llava) if train] == ["It is red.\n###", "A square.\n###"]
    assert ("Add two and two.\n### Assistant: ", False) in texts(by_origin["alpaca.json#0"])
    assert ("Repeat the word.\ncat\n### Assistant: ", False) in texts(by_origin["alpaca.json#1"])
    videochat = by_origin["videochat.json#0"]
    assert [s.modality for s in videochat.segments if isinstance(s, Media)] == ["video"]
    assert ("Watch the clip.\nWhat moves?\n### Assistant: ", False) in texts(videochat)

    # T2M: the answer names its output; the signal tokens go where <image> is, or at the end
    image = by_origin["image_instruction_tuning.json#0"]
    assert ("Here it is: [IMG0][IMG1][IMG2][IMG3]\n###", True) in texts(image)
    audio = by_origin["audio_instruction_tuning.json#0"]
    assert ("Listen. " + "".join(f"[AUD{i}]" for i in range(8)) + "\n###", True) in texts(audio)
    assert [(o.modality, o.caption) for o in audio.outputs] == [("audio", "a low hum")]

    # MosIT: several inputs and outputs over two rounds, outputs in order of their signal tokens
    mosit = by_origin["mosit_instruction_tuning.json#0"]
    assert [s.modality for s in mosit.segments if isinstance(s, Media)] == ["image", "audio"]
    assert [(o.modality, o.caption) for o in mosit.outputs] == [("image", "a calm sea"), ("video", "waves rolling")]


def test_bad_samples_are_skipped_with_their_reason(root, tokenizer):
    data = dataset("cc3m", root / "bad", tokenizer)
    items = [data[i] for i in range(len(data))]
    assert not isinstance(items[0], Skipped)
    reasons = [item.reason for item in items[1:]]
    assert "not found" in reasons[0] and "missing.png" in reasons[0]
    assert "cannot decode" in reasons[1] and "corrupt.png" in reasons[1]
    assert reasons[2] == "empty caption"
    assert reasons[3].startswith("too long:") and "data.max_length=256" in reasons[3]
    batch = collate(items)
    assert len(batch) == 1 and len(batch.skipped) == 4


def test_malformed_records_become_bad_samples_not_crashes(tmp_path, tokenizer):
    records = [
        {"caption": "no file key"},
        {"conversations": [{"from": "gpt", "value": "answer first"}]},
        {"conversations": [{"from": "human", "value": "<image> two <image>"}, {"from": "gpt", "value": "x"}],
         "image": "a.png"},
        {"conversations": [{"from": "human", "value": "draw"}, {"from": "gpt", "value": "<image>"}]},
        "not an object",
    ]
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(records))
    source = Source("conversations", path, dict.fromkeys(MODALITIES, tmp_path))
    problems = [r.problem for r in read_source(source, pairs="comprehension", pair_prompt="")]
    assert problems[0] == "no 'conversations' list"
    assert "start with human" in problems[1]
    assert "more <image> placeholders than input image files" in problems[2]
    assert "more <image> placeholders in answers than image captions" in problems[3]
    assert "not an object" in problems[4]


def test_unreadable_annotation_files_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="annotation file not found"):
        load_annotations(tmp_path / "nope.json")
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_annotations(tmp_path / "broken.json")


def test_shards_are_disjoint_equal_and_seeded():
    streams = [ShardStream(7, seed=1, rank=r, world=2, shuffle=True) for r in (0, 1)]
    shards = [stream.epoch(0) for stream in streams]
    assert len(shards[0]) == len(shards[1]) == 4
    assert set(shards[0]) | set(shards[1]) == set(range(7))
    assert ShardStream(7, seed=1, rank=0, world=2, shuffle=True).epoch(0) == shards[0]
    assert streams[0].epoch(1) != shards[0]
    assert list(itertools.islice(streams[0], 8)) == shards[0] + streams[0].epoch(1)  # epochs follow on


class Numbers(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return Example([Text(str(i))], [], 1)


def test_stream_resumes_at_the_same_batch_across_epochs():
    def take(stream, n):
        return [[s[0].text for s in next(stream).segments] for _ in range(n)]

    straight = BatchStream(Numbers(), batch_size=2, num_workers=0, seed=3)
    expected = take(straight, 7)  # 14 positions: crosses two epoch boundaries
    first = BatchStream(Numbers(), batch_size=2, num_workers=0, seed=3)
    head = take(first, 4)
    assert first.position == {"samples": 8} and first.epoch == 8 / 5
    resumed = BatchStream(Numbers(), batch_size=2, num_workers=1, seed=3, position=first.position)
    assert head + take(resumed, 3) == expected


class Draws(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.rand(())  # an augmentation's draw


def test_seeded_samples_draw_by_their_place_in_the_run_whatever_reads_them():
    def stream(workers):
        return BatchStream(Draws(), batch_size=2, num_workers=workers, seed=3, collate_fn=torch.stack,
                           seeded_samples=True)

    straight = stream(0)
    expected = [next(straight) for _ in range(5)]
    assert len(set(torch.cat(expected).tolist())) == 10  # a new draw each time a scene comes again
    first = stream(0)
    torch.manual_seed(0)
    head = [next(first) for _ in range(2)]  # read in this process
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), after)  # the caller's RNG is left as it was
    resumed = stream(1)  # read by a worker, from the position the first stream reached
    resumed.load_state_dict(first.state_dict())
    tail = [next(resumed) for _ in range(3)]
    assert torch.equal(torch.cat(head + tail), torch.cat(expected))


@pytest.mark.parametrize("modality", MODALITIES)
def test_decoder_media_in_vae_layout(root, modality):
    spec = {
        "image": DecoderMediaSpec("image", height=16, width=16),
        "video": DecoderMediaSpec("video", height=16, width=16, num_frames=4),
        "audio": DecoderMediaSpec("audio", sample_rate=16000, frames=50, mel_bins=16, hop_length=160),
    }[modality]
    path = {
        "image": root / "T_X_pair_data" / "cc3m" / "images" / "000000000.png",
        "video": root / "T_X_pair_data" / "webvid" / "videos" / "0.mp4",
        "audio": root / "T_X_pair_data" / "audiocap" / "audios" / "0.wav",
    }[modality]
    media = load_decoder_media(spec, path)
    assert media.shape == {"image": (3, 16, 16), "video": (4, 3, 16, 16), "audio": (1, 50, 16)}[modality]
    assert torch.isfinite(media).all()
    if modality != "audio":
        assert media.min() >= -1 and media.max() <= 1
    with pytest.raises(MediaError, match="not found"):
        load_decoder_media(spec, Path(path).with_name("missing"))


def test_t2m_turn_caption_counts_for_its_target_file(tmp_path):
    from nextmm.data.records import Source, read_conversation

    source = Source("t2m", tmp_path / "t2m.json", {"image": tmp_path})
    raw = {"output_image": ["sea.png"], "conversations": [
        {"from": "human", "value": "show me the sea"},
        {"from": "gpt", "value": "Here it is.", "caption": "waves on a beach", "output_modality": "image"}]}
    turns = read_conversation(raw, source)
    (output,) = turns[1].outputs
    assert (output.modality, output.caption, output.path) == ("image", "waves on a beach", tmp_path / "sea.png")


def test_the_token_after_a_signal_run_is_the_same_whatever_follows(tokenizer):
    """What follows a medium ("and" another, a comma, the end) is chosen at a text token, never at the run's last
    signal token: with Vicuna's tokenizer the text after a run starts with its lone space token."""
    data = ConversationDataset([], tokenizer=tokenizer, signal_counts=SIGNALS, max_length=64)
    run = "".join(f"[IMG{i}]" for i in range(4))
    assert data.with_signals("the sea <image> and its sound <audio>.") == \
        f"the sea {run} and its sound " + "".join(f"[AUD{i}]" for i in range(8)) + " ."
    assert data.with_signals("the sea <image>, a clip <video> and").startswith(f"the sea {run} , a clip")
    assert around_outputs("Your vlog: <image> <audio> <video>") == (["Your vlog: ", "", "", ""], list(MODALITIES))

    llama = llama_tokenizer()
    llama.add_tokens(added_tokens(SIGNALS)[2:], special_tokens=True)
    last = {llama.convert_tokens_to_ids(f"[{name}]") for name in ("IMG3", "AUD7", "VID23")}
    after = set()
    for answer in ("Here is the sea <image> and the sound of the sea <audio>.", "Here is the sea <image>.",
                   "A picture <image>, a sound <audio> and a clip <video>.", "Here is the sea <image>"):
        ids = llama(data.with_signals(answer) + "\n###", add_special_tokens=False).input_ids
        after |= {ids[i + 1] for i in range(len(ids) - 1) if ids[i] in last}
    assert llama.convert_ids_to_tokens(sorted(after)) == ["▁"]
