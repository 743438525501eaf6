"""python -m nextmm precompute: alignment targets and encoder features written once, read back, checked against
the model that computed them."""

import json

import pytest
import torch
from safetensors.torch import load_file

from nextmm import cli
from nextmm.cli import compose_config
from nextmm.data import Skipped, build_dataset, precompute
from nextmm.data.precomputed import (
    Precomputed,
    decoder_fingerprints,
    encoder_fingerprints,
)
from nextmm.errors import ConfigError
from nextmm.inference.prompt import Media
from nextmm.modality import MODALITIES
from nextmm.model import NextMM
from nextmm.parts.preprocess import load_media
from nextmm.recipes import encoder_side


@pytest.fixture(scope="module")
def targets(root, tmp_path_factory):
    """Targets of the T2M + MosIT mix, one row per shard so that several shards are read."""
    folder = tmp_path_factory.mktemp("targets") / "instructions"
    overrides = [f"data.root={root}", "data=instructions", f"output={folder}", "shard_size=1"]
    precompute.main(compose_config("precompute", overrides))
    return folder


@pytest.fixture(scope="module")
def model():
    return NextMM.from_config("tiny")


def run_cli(argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.run("precompute", precompute.main, argv)
    return exit_info.value.code


def test_every_output_caption_is_written_and_equals_the_text_encoder(targets, model):
    index = json.loads((targets / "index.json").read_text())
    assert {m: sorted(c) for m, c in index["captions"].items()} == {
        "image": ["a calm sea", "a red square"], "audio": ["a low hum"], "video": ["a moving bar", "waves rolling"]}
    assert index["modalities"]["image"]["shape"] == [77, 32] and index["modalities"]["audio"]["shape"] == [32]
    store = Precomputed(targets, "targets", decoder_fingerprints(model.config.decoders))
    for modality, captions in index["captions"].items():
        for caption in captions:
            expected = model.decoders.encode_text(modality, [caption])[0]
            torch.testing.assert_close(store.get(modality, caption), expected)
    shards = sorted(p.name for p in targets.glob("*.safetensors"))
    assert shards == ["targets-00000.safetensors", "targets-00001.safetensors"]
    assert set(load_file(targets / "targets-00001.safetensors")) == {"image", "video"}  # audio has one row


def test_targets_of_another_decoder_are_refused(targets):
    other = NextMM.from_config("tiny", overrides=["decoders.image.components.text_encoder.seed=7"], empty=True)
    with pytest.raises(ConfigError, match="different image decoder"):
        Precomputed(targets, "targets", decoder_fingerprints(other.config.decoders))


def test_a_dataset_with_captions_the_targets_lack_is_refused(targets, root, model):
    cfg = compose_config("stage/decoder_side", [f"data.root={root}", "data=cc3m", "output_dir=unused"])
    with pytest.raises(ConfigError, match="3 output captions have no precomputed target"):
        build_dataset(cfg.data, tokenizer=model.tokenizer, signal_counts=model.config.signal_tokens, pairs="generation",
                      pair_prompt="{caption}", targets=targets, decoders_cfg=model.config.decoders)


def test_missing_output_and_missing_folder_are_one_line_errors(tmp_path, capsys):
    assert run_cli(["data=cc3m"]) == cli.USAGE_ERROR
    err = capsys.readouterr().err.strip()
    assert err == "error: set output=<folder> for the targets (then pass targets=<folder> to a stage)"
    with pytest.raises(ConfigError, match=r"no precomputed targets in .*index.json missing"):
        Precomputed(tmp_path, "targets", {})


# ------------------------------------------------------------------------------------------ features
@pytest.fixture(scope="module")
def features(root, tmp_path_factory):
    """ImageBind features of every input medium of the instruction mix (images, audio and video)."""
    folder = tmp_path_factory.mktemp("features") / "instructions"
    overrides = [f"data.root={root}", "data=instructions", f"output={folder}", "kind=features", "num_workers=0"]
    precompute.main(compose_config("precompute", overrides))
    return folder


def instruction_data(root, model, **precomputed):
    cfg = compose_config("stage/modality_switching", [f"data.root={root}", "output_dir=unused"])
    return build_dataset(cfg.data, tokenizer=model.tokenizer, signal_counts=model.config.signal_tokens,
                         pairs="generation", pair_prompt=cfg.pair_prompt, encoder_cfg=model.config.encoder,
                         **precomputed)


def test_every_input_medium_is_written_and_equals_the_encoder(features, root, model):
    index = json.loads((features / "index.json").read_text())
    assert {m: sorted(keys) for m, keys in index["media"].items()} == {  # relative to data.root, each once
        "image": ["IT_data/MosIT_data/images/0.png", "IT_data/T+X-T_data/llava/images/0.png",
                  "IT_data/T+X-T_data/llava/images/1.png"],
        "audio": ["IT_data/MosIT_data/audios/0.wav"], "video": ["IT_data/T+X-T_data/videochat/videos/0.mp4"]}
    store = Precomputed(features, "features", encoder_fingerprints(model.config.encoder, MODALITIES))
    for modality, keys in index["media"].items():
        assert index["modalities"][modality]["shape"] == [model.encoder.embed_dim]
        for key in keys:
            expected = model.encoder(modality, load_media(modality, root / key)[None])[0]
            torch.testing.assert_close(store.get(modality, key), expected, atol=1e-5, rtol=1e-4)


def test_with_features_the_llm_gets_the_same_inputs_without_running_the_encoder(features, root, model, monkeypatch):
    raw, cached = instruction_data(root, model), instruction_data(root, model, features=features)
    with_media = [i for i in range(len(raw)) if any(isinstance(s, Media) for s in raw[i].segments)]
    assert len(with_media) >= 3
    for i in with_media:
        media = [s for s in cached[i].segments if isinstance(s, Media)]
        assert all(m.encoded and m.data.shape == (model.encoder.embed_dim,) for m in media)
    expected = model.embed_segments([raw[i].segments for i in with_media])
    monkeypatch.setattr(model.encoder, "forward", lambda *a: pytest.fail("the encoder ran"))
    found = model.embed_segments([cached[i].segments for i in with_media])
    torch.testing.assert_close(found.inputs_embeds, expected.inputs_embeds, atol=1e-5, rtol=1e-4)
    assert torch.equal(found.labels, expected.labels)


def test_unreadable_media_are_recorded_and_their_samples_skipped_alike(root, tmp_path, model):
    bad = root / "bad"
    overrides = [f"data.root={bad}", "data=cc3m", f"output={tmp_path / 'f'}", "kind=features", "num_workers=0"]
    precompute.main(compose_config("precompute", overrides))
    index = json.loads((tmp_path / "f" / "index.json").read_text())
    assert sorted(index["bad"]["image"]) == ["T_X_pair_data/cc3m/images/corrupt.png",
                                             "T_X_pair_data/cc3m/images/missing.png"]
    cfg = compose_config("stage/encoder_side", [f"data.root={bad}", "data=cc3m", "output_dir=unused"])

    def reasons(**precomputed):
        data = build_dataset(cfg.data, tokenizer=model.tokenizer, signal_counts=model.config.signal_tokens,
                             pairs="comprehension", pair_prompt=cfg.pair_prompt, encoder_cfg=model.config.encoder,
                             **precomputed)
        return [item.reason if isinstance(item, Skipped) else None for item in (data[i] for i in range(len(data)))]

    assert reasons(features=tmp_path / "f") == reasons()
    assert reasons()[0] is None and "corrupt.png" in reasons()[2]


def test_features_of_another_encoder_or_other_media_are_refused(features, root, model):
    other = NextMM.from_config("tiny", overrides=["encoder.seed=7"], empty=True)
    with pytest.raises(ConfigError, match="different image encoder .* or pass features=null"):
        instruction_data(root, other, features=features)
    cfg = compose_config("stage/encoder_side", [f"data.root={root}", "output_dir=unused"])
    with pytest.raises(ConfigError, match=r"\d+ input media have no precomputed feature in .*kind=features"):
        build_dataset(cfg.data, tokenizer=model.tokenizer, signal_counts=model.config.signal_tokens,
                      pairs="comprehension", pair_prompt=cfg.pair_prompt, features=features,
                      encoder_cfg=model.config.encoder)


def test_encoder_side_trains_the_same_from_features(root, tmp_path):
    precompute.main(compose_config("precompute", [f"data.root={root}", f"output={tmp_path / 'f'}", "kind=features",
                                                   "num_workers=0"]))

    def losses(name, *extra):
        overrides = [f"data.root={root}", f"output_dir={tmp_path / name}", "data.num_workers=0", "train.max_steps=3",
                     "logging.every=1000", *extra]
        return encoder_side.train(compose_config("stage/encoder_side", overrides))["losses"]

    assert losses("raw") == pytest.approx(losses("cached", f"features={tmp_path / 'f'}"), rel=1e-4)


def test_an_unknown_kind_is_a_one_line_error(capsys):
    assert run_cli(["kind=latents", "output=x"]) == cli.USAGE_ERROR
    assert capsys.readouterr().err.strip().startswith("error: kind='latents': choose targets")
