"""python -m nextmm.precompute: alignment targets written once, read by caption, checked against the decoder."""

import json

import pytest
import torch
from safetensors.torch import load_file

from nextmm import cli, precompute
from nextmm.cli import compose_config
from nextmm.data import build_dataset
from nextmm.data.targets import AlignmentTargets
from nextmm.errors import ConfigError
from nextmm.model import NextMM


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
    store = AlignmentTargets(targets, model.config.decoders)
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
        AlignmentTargets(targets, other.config.decoders)


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
        AlignmentTargets(tmp_path, {})
