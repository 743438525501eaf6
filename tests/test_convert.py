"""nextmm.weights.convert on a synthetic official release: the official key names at the tiny model's shapes."""

import enum
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fixtures.llama_tokenizer import RELEASE_TOKENIZER, write_tiny_llama_tokenizer
from nextmm import cli
from nextmm.config import load_model_config
from nextmm.errors import ConfigError
from nextmm.model import NextMM
from nextmm.parts.llm import added_tokens, build_tokenizer, character_tokenizer
from nextmm.weights.convert import (
    RESAVE,
    check_release_files,
    convert_checkpoint,
    convert_state,
    expected_tensors,
    main,
)
from nextmm.weights.trained import EMBEDDINGS_FILE, save_trained_parts

HIDDEN, LAYERS, RANK, WIDTH = 64, 2, 8, 32  # nextmm/conf/model/tiny.yaml
ENCODER_DIM = 32  # nextmm/conf/encoder/tiny.yaml out_embed_dim
# modality -> (official prefix, queries, output width), from nextmm/conf/decoders/tiny.yaml conditioning shapes
OFFICIAL_PROJECTORS = {
    "image": ("gen_text_hidden_fcs.0.", 77, 32),
    "video": ("gen_text_hidden_fcs_video.0.", 77, 32),
    "audio": ("gen_text_hidden_fcs_audio.0.", 1, 32),
}
OFFICIAL_ORDER = ["<Img>", "</Img>"] + [f"[IMG{i}]" for i in range(4)] + [f"[VID{i}]" for i in range(24)] + [
    f"[AUD{i}]" for i in range(8)
]
NOT_ADDED_ID = 5


class TextFcLayer(nn.Module):
    """The original's output projector in mode 'transformer', at tiny width (its parameter names only)."""

    def __init__(self, in_dim: int, out_dim: int, queries: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, WIDTH)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.tfm = nn.Transformer(d_model=WIDTH, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                      dim_feedforward=64, dropout=0.0, batch_first=True, norm_first=True)
        self.model = nn.Linear(WIDTH, out_dim)
        self.query_embs = nn.Parameter(torch.randn(1, queries, WIDTH))


class Unsafe:
    """Anything that is not a tensor: torch's weights-only unpickler must refuse it."""


def official_state(vocab: int, *, lora_suffix: str = ".default", embed_prefix: str = "llama_model.base_model.model.",
                   dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """What the original's stage 3 saves: every trained nn.Parameter under its NextGPTModel name."""
    torch.manual_seed(0)
    state = {}
    for layer in range(LAYERS):
        for proj in "qkvo":
            key = f"llama_model.base_model.model.model.layers.{layer}.self_attn.{proj}_proj"
            state[f"{key}.lora_A{lora_suffix}.weight"] = torch.randn(RANK, HIDDEN)
            state[f"{key}.lora_B{lora_suffix}.weight"] = torch.randn(HIDDEN, RANK)
    state[f"{embed_prefix}model.embed_tokens.weight"] = torch.randn(vocab, HIDDEN)
    state[f"{embed_prefix}lm_head.weight"] = torch.randn(vocab, HIDDEN)
    state["llama_proj.weight"] = torch.randn(HIDDEN, ENCODER_DIM)
    state["llama_proj.bias"] = torch.randn(HIDDEN)
    for prefix, queries, out_dim in OFFICIAL_PROJECTORS.values():
        layer = TextFcLayer(HIDDEN, out_dim, queries)
        for name, param in layer.named_parameters():
            state[prefix + name] = param.detach() + 0.1 * torch.randn_like(param)  # not at init values
    return {k: nn.Parameter(v.to(dtype), requires_grad=False) for k, v in state.items()}


def write_release(folder, state) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.pt")
    tokenizer = character_tokenizer()
    for token in OFFICIAL_ORDER:  # one by one, as the original's _add_*_token did
        tokenizer.add_tokens(token)
    tokenizer.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    folder = tmp_path_factory.mktemp("release") / "nextgpt_7b_tiva_v0"
    state = official_state(354 + len(OFFICIAL_ORDER))
    write_release(folder, state)
    return folder, state


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    source, state = release
    output = convert_checkpoint(source, tmp_path_factory.mktemp("out") / "nextgpt_tiny", "tiny")
    return output, state, NextMM.from_config(output)


def _official_ids(source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source)).convert_tokens_to_ids(OFFICIAL_ORDER)


def test_folder_has_the_trained_parts_layout(converted):
    output, _, _ = converted
    names = {p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()}
    assert {"projectors.safetensors", "embeddings.safetensors", "adapter/adapter_model.safetensors",
            "adapter/adapter_config.json", "config.yaml"} <= names
    assert any(n.startswith("tokenizer/") for n in names)
    assert not list(output.parent.glob(f".{output.name}*"))  # no staging folder left


def test_projectors_come_from_the_right_official_tensors(converted):
    _, state, model = converted
    torch.testing.assert_close(model.input_projector.proj.weight, state["llama_proj.weight"].float())
    torch.testing.assert_close(model.input_projector.proj.bias, state["llama_proj.bias"].float())
    renames = {"fc.": "fc.", "tfm.": "transformer.", "model.": "out.", "query_embs": "queries"}
    for modality, (prefix, _, _) in OFFICIAL_PROJECTORS.items():
        mine = model.output_projectors[modality].state_dict()
        official = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        assert len(mine) == len(official)
        for key, value in official.items():
            old = next(o for o in renames if key.startswith(o))
            torch.testing.assert_close(mine[renames[old] + key.removeprefix(old)], value.float(), msg=key)


def test_lora_weights_are_equal(converted):
    _, state, model = converted
    params = dict(model.llm.named_parameters())
    lora = [k for k in state if ".lora_" in k]
    assert len(lora) == LAYERS * 4 * 2
    for key in lora:
        torch.testing.assert_close(params[key.removeprefix("llama_model.")], state[key].float(), msg=key)


def test_embeddings_and_lm_head_equal_the_official_matrices(converted, release):
    _, state, model = converted
    embed = state["llama_model.base_model.model.model.embed_tokens.weight"].float()
    head = state["llama_model.base_model.model.lm_head.weight"].float()
    official_ids = _official_ids(release[0])
    for token, official_id in zip(OFFICIAL_ORDER, official_ids):  # looked up by string, not by position
        row = model.embed_tokens(torch.tensor([model.tokenizer.convert_tokens_to_ids(token)]))[0]
        torch.testing.assert_close(row, embed[official_id], msg=token)
    torch.testing.assert_close(model.embed_tokens(torch.tensor([NOT_ADDED_ID]))[0], embed[NOT_ADDED_ID])
    torch.testing.assert_close(model.embed_tokens(torch.arange(len(embed))), embed)
    hidden = torch.randn(3, HIDDEN)
    logits = model.llm.get_output_embeddings()(hidden)  # every row: added ones via peft, the rest via the base
    torch.testing.assert_close(logits, hidden @ head.T)


def test_a_tokenizer_with_nextmm_token_order_gets_the_same_rows(converted, release):
    """model=nextgpt_7b builds its tokenizer from Vicuna's, adding tokens in nextmm's order (image, audio,
    video), so the added ids differ from the release's; the rows still follow the token strings."""
    output, state, _ = converted
    model = NextMM.from_config("tiny", overrides=[f"trained={output}"])
    embed = state["llama_model.base_model.model.model.embed_tokens.weight"].float()
    official_ids = dict(zip(OFFICIAL_ORDER, _official_ids(release[0])))
    assert model.tokenizer.convert_tokens_to_ids("[AUD0]") != official_ids["[AUD0]"]
    for token in added_tokens(model.config.signal_tokens):
        row = model.embed_tokens(torch.tensor([model.tokenizer.convert_tokens_to_ids(token)]))[0]
        torch.testing.assert_close(row, embed[official_ids[token]], msg=token)


def test_saving_a_converted_model_keeps_its_embeddings(converted, tmp_path):
    _, state, model = converted
    folder = save_trained_parts(model, tmp_path / "again")
    saved = load_file(folder / EMBEDDINGS_FILE)
    torch.testing.assert_close(saved["embed_tokens.weight"],
                               state["llama_model.base_model.model.model.embed_tokens.weight"].float())


def test_misshapen_embeddings_file_is_one_line_naming_both_shapes(converted, tmp_path):
    output, _, _ = converted
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("projectors.safetensors", "adapter", "tokenizer", "config.yaml"):
        (bad / name).symlink_to(output / name)
    embeddings = load_file(output / EMBEDDINGS_FILE)
    embeddings["lm_head.weight"] = embeddings["lm_head.weight"][:10]
    save_file(embeddings, bad / EMBEDDINGS_FILE)
    with pytest.raises(ConfigError, match=r"lm_head\.weight has shape \(10, 64\), model expects \(392, 64\)") as error:
        NextMM.from_config(bad)
    assert "\n" not in str(error.value)


def test_the_other_official_key_variants_convert_too():
    cfg = load_model_config("tiny")
    vocab = 354 + len(OFFICIAL_ORDER)
    ids = list(range(354, vocab))
    expected = expected_tensors(cfg, vocab, ids)
    state = official_state(vocab, lora_suffix="", embed_prefix="llama_model.")
    parts = convert_state(state, expected, ids)
    assert parts.adapter.keys() == expected.adapter.keys()
    assert parts.embeddings.keys() == {"embed_tokens.weight", "lm_head.weight"}


def _convert_error(tmp_path, state) -> str:
    write_release(tmp_path / "release", state)
    with pytest.raises(ConfigError) as error:
        convert_checkpoint(tmp_path / "release", tmp_path / "out", "tiny")
    message = str(error.value)
    assert "\n" not in message
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    return message


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path):
    state = official_state(392)
    state["llama_proj.weight"] = torch.zeros(HIDDEN, 16)
    message = _convert_error(tmp_path, state)
    assert "llama_proj.weight has shape (64, 16), the model config expects (64, 32)" in message


def test_missing_key_is_named(tmp_path):
    state = official_state(392)
    del state["gen_text_hidden_fcs_audio.0.query_embs"]
    message = _convert_error(tmp_path, state)
    assert "missing official key gen_text_hidden_fcs_audio.0.query_embs (1, 1, 32)" in message


def test_unknown_key_is_not_silently_dropped(tmp_path):
    state = official_state(392)
    state["visual_encoder.trunk.weight"] = torch.zeros(2)
    state["gen_text_hidden_fcs.1.fc.weight"] = torch.zeros(2)
    message = _convert_error(tmp_path, state)
    assert "unused official key gen_text_hidden_fcs.1.fc.weight" in message
    assert "unused official key visual_encoder.trunk.weight" in message


def test_embedding_rows_must_match_the_tokenizer(tmp_path):
    message = _convert_error(tmp_path, official_state(400))
    assert "embed_tokens.weight has shape (400, 64), the model config expects (392, 64)" in message


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    write_release(tmp_path / "release", official_state(392))
    torch.save({"llama_proj.weight": Unsafe()}, tmp_path / "release" / "pytorch_model.pt")
    with pytest.raises(ConfigError, match=r"cannot be read as plain tensors \(Unsupported global") as error:
        convert_checkpoint(tmp_path / "release", tmp_path / "out", "tiny")
    assert "\n" not in str(error.value) and "Unsafe" in str(error.value)


def test_existing_output_is_kept_unless_overwrite(release, tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        convert_checkpoint(release[0], tmp_path / "out", "tiny")


def test_cli_converts_and_reports_errors_in_one_line(release, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        cli.run("convert", main, [f"source={release[0]}", f"output={tmp_path / 'cli'}", "model=tiny"])
    assert done.value.code == 0 and (tmp_path / "cli" / "projectors.safetensors").is_file()
    assert "INFO nextmm.weights.convert: converted" in capsys.readouterr().err
    with pytest.raises(SystemExit) as failed:
        cli.run("convert", main, [f"source={tmp_path / 'nowhere'}", f"output={tmp_path / 'x'}", "model=tiny"])
    err = capsys.readouterr().err.strip()
    assert failed.value.code == 2 and len(err.splitlines()) == 1 and "pytorch_model.pt" in err


def test_full_size_expectations_are_the_release_shapes():
    """nextgpt_7b on the meta device expects what the 7B release holds (embeddings 32000 + 38 rows)."""
    expected = expected_tensors(load_model_config("nextgpt_7b"), 32038, list(range(32000, 32038)))
    shapes = {k: tuple(v.shape) for group in (expected.projectors, expected.embeddings) for k, v in group.items()}
    assert shapes["input_projector.proj.weight"] == (4096, 1024)
    assert shapes["embed_tokens.weight"] == shapes["lm_head.weight"] == (32038, 4096)
    assert [shapes[f"output_projectors.{m}.queries"] for m in ("image", "audio", "video")] == [
        (1, 77, 512), (1, 1, 512), (1, 77, 512)]
    assert [shapes[f"output_projectors.{m}.out.weight"] for m in ("image", "audio", "video")] == [
        (768, 512), (512, 512), (1024, 512)]
    assert len([k for k in expected.adapter if ".lora_" in k]) == 32 * 4 * 2


# ---------------------------------------------------------------------------------- the release's real files
@pytest.mark.parametrize("name", ["tokenizer.model", "added_tokens.json", "tokenizer_config.json",
                                  "special_tokens_map.json"])
def test_a_release_missing_a_tokenizer_file_names_it_and_where_to_get_it(tmp_path, capsys, name):
    """The release's tokenizer files as the original saved them (transformers 4.29.2), one of them gone."""
    source = tmp_path / "nextgpt_7b_tiva_v0"
    shutil.copytree(RELEASE_TOKENIZER, source)
    torch.save({"llama_proj.weight": torch.zeros(2, 2, dtype=torch.float16)}, source / "pytorch_model.pt")
    check_release_files(source)  # complete: no complaint
    (source / name).unlink()
    with pytest.raises(SystemExit) as failed:
        cli.run("convert", main, [f"source={source}", f"output={tmp_path / 'out'}", "model=tiny"])
    err = capsys.readouterr().err.strip()
    assert failed.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"lacks {name} (" in err and "ChocoWu/nextgpt_7b_tiva_v0" in err and "parts=[nextgpt]" in err


def test_a_tokenizer_folder_missing_a_file_is_one_line(tmp_path):
    folder = write_tiny_llama_tokenizer(tmp_path / "tokenizer")
    (folder / "tokenizer_config.json").unlink()
    with pytest.raises(ConfigError, match=r"lacks tokenizer_config.json \(the tokenizer's settings\): .*nextmm "
                                          "convert again") as error:
        build_tokenizer({"tokenizer": str(folder)}, {"image": 4, "audio": 8, "video": 24})
    assert "\n" not in str(error.value)


def test_tensors_other_than_float16_are_kept_and_reported(tmp_path, caplog):
    """The release is float16 (DeepSpeed fp16); a float32 copy converts as it is, with a warning saying so."""
    write_release(tmp_path / "release", official_state(392, dtype=torch.float32))
    output = convert_checkpoint(tmp_path / "release", tmp_path / "out", "tiny")
    assert load_file(output / "projectors.safetensors")["input_projector.proj.weight"].dtype == torch.float32
    assert "holds float32 tensors where the release's are float16: kept as they are" in caplog.text


def test_non_float_tensors_are_refused(tmp_path):
    state = official_state(392)
    state["llama_proj.bias"] = torch.zeros(HIDDEN, dtype=torch.int64)
    write_release(tmp_path / "release", state)
    with pytest.raises(ConfigError, match=r"not floating point: llama_proj.bias \(torch.int64\)"):
        convert_checkpoint(tmp_path / "release", tmp_path / "out", "tiny")


class ZeroParamStatus(enum.Enum):
    """Stands for DeepSpeed's attribute values (deepspeed.runtime.zero.partition_parameters.ZeroParamStatus)."""

    NOT_AVAILABLE = 2


def test_deepspeed_attributes_are_refused_with_the_documented_resave(tmp_path, monkeypatch):
    """Parameters saved with DeepSpeed's attributes on them: weights_only refuses the file, the message gives the
    one-line re-save, and after it the file converts. Nothing is loaded unsafely by nextmm."""
    state = official_state(392)
    for param in state.values():
        param.ds_id, param.ds_status = 7, ZeroParamStatus.NOT_AVAILABLE
    write_release(tmp_path / "release", state)
    with pytest.raises(ConfigError) as error:
        convert_checkpoint(tmp_path / "release", tmp_path / "out", "tiny")
    message = str(error.value)
    assert "\n" not in message and "ZeroParamStatus" in message and RESAVE in message
    monkeypatch.chdir(tmp_path / "release")
    exec(RESAVE.split('"')[1])  # the documented line, on the test's own file
    output = convert_checkpoint(tmp_path / "release", tmp_path / "out", "tiny")
    assert load_model_config(output).prompt_format == "nextgpt"


def test_a_converted_release_reads_the_original_prompt_format(converted):
    """The release's LoRA was tuned on the original's format, whatever model= gave the architecture."""
    output, _, model = converted
    assert load_model_config("tiny").prompt_format == "nextmm"
    assert load_model_config(output).prompt_format == model.prompt_format == "nextgpt"
