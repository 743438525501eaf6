"""nextmm.weights.required: every missing path of a real config, in one line."""

import pytest

from nextmm.config import load_model_config
from nextmm.errors import ConfigError
from nextmm.weights.required import PARTS, check_weights, missing_weights

NEXTGPT_PATHS = [
    "checkpoints/imagebind_huge.pth",
    "checkpoints/vicuna-7b-v0",
    "checkpoints/stable-diffusion-v1-5",
    "checkpoints/audioldm-l-full",
    "checkpoints/zeroscope_v2_576w",
    "checkpoints/nextgpt_7b",
]


@pytest.fixture(scope="module")
def nextgpt_cfg():
    return load_model_config("nextgpt_7b")


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_tiny_needs_nothing():
    cfg = load_model_config("tiny")
    assert missing_weights(cfg) == []
    check_weights(cfg)


def test_every_missing_path_of_nextgpt_7b_is_listed(nextgpt_cfg, empty_cwd):
    missing = missing_weights(nextgpt_cfg)
    assert [m.path for m in missing] == NEXTGPT_PATHS  # Vicuna's folder is also its tokenizer: listed once
    assert all(m.what and m.how for m in missing)
    assert "python -m nextmm download parts=[sd]" in missing[2].how
    assert "apply_delta" in missing[1].how


def test_check_weights_is_one_line_naming_every_path(nextgpt_cfg, empty_cwd):
    with pytest.raises(ConfigError) as error:
        check_weights(nextgpt_cfg)
    message = str(error.value)
    assert "\n" not in message
    for path in NEXTGPT_PATHS:
        assert path in message
    assert "python -m nextmm download" in message and "docs/real_weights.md" in message


def test_present_parts_are_not_listed(nextgpt_cfg, empty_cwd):
    (empty_cwd / "checkpoints" / "stable-diffusion-v1-5").mkdir(parents=True)
    (empty_cwd / "checkpoints" / "stable-diffusion-v1-5" / "model_index.json").write_text("{}")
    (empty_cwd / "checkpoints" / "audioldm-l-full").mkdir()  # a folder without model_index.json is not enough
    vicuna = empty_cwd / "checkpoints" / "vicuna-7b-v0"
    vicuna.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        (vicuna / name).write_text("{}")
    paths = [m.path for m in missing_weights(nextgpt_cfg)]
    assert paths == [NEXTGPT_PATHS[0], NEXTGPT_PATHS[3], NEXTGPT_PATHS[4], NEXTGPT_PATHS[5]]


def test_a_separate_tokenizer_folder_and_untrained_builds(nextgpt_cfg, empty_cwd):
    cfg = nextgpt_cfg.copy()
    cfg.llm.tokenizer = "elsewhere/tokenizer"
    missing = missing_weights(cfg, trained=False)
    assert "elsewhere/tokenizer" in [m.path for m in missing]
    assert "checkpoints/nextgpt_7b" not in [m.path for m in missing]


def test_part_folders_are_the_config_paths(nextgpt_cfg):
    configured = {
        nextgpt_cfg.encoder.checkpoint, nextgpt_cfg.llm.path,
        *(nextgpt_cfg.decoders[m].path for m in ("image", "audio", "video")),
    }
    assert {f"checkpoints/{p.folder}" for p in PARTS.values() if p.name != "nextgpt"} == configured
