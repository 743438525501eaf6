import sys

import pytest
import torch
from omegaconf import OmegaConf

from nextmm.config import conf_dir
from nextmm.errors import ConfigError
from nextmm.parts.encoder import (
    ImageBindEncoder,
    count_parameters,
    load_imagebind_model_module,
)

CONF = conf_dir() / "encoder"
INPUT_SHAPES = {
    "image": (2, 3, 224, 224),
    "audio": (2, 3, 1, 128, 204),
    "video": (2, 15, 3, 2, 224, 224),
}


@pytest.fixture(scope="module")
def tiny_cfg():
    return OmegaConf.load(CONF / "tiny.yaml")


@pytest.fixture(scope="module")
def tiny(tiny_cfg):
    return ImageBindEncoder.from_config(tiny_cfg)


def _inputs(modality, seed=0):
    return torch.randn(INPUT_SHAPES[modality], generator=torch.Generator().manual_seed(seed))


def test_imports_model_code_without_imagebind_data():
    module = load_imagebind_model_module()
    assert hasattr(module, "ImageBindModel")
    assert "imagebind.data" not in sys.modules  # data.py needs pytorchvideo, broken on this stack


@pytest.mark.parametrize("modality", ["image", "audio", "video"])
def test_tiny_embeds_each_modality(tiny, modality):
    out = tiny(modality, _inputs(modality))
    assert out.shape == (2, tiny.embed_dim) == (2, 32)
    assert torch.isfinite(out).all()
    assert not out.requires_grad


def test_output_scales_are_imagebinds_postprocessing(tiny):
    # One clip each, so no averaging: vision is unit-norm, audio unit-norm times the fixed scale 20.
    image = tiny("image", _inputs("image"))
    audio = tiny("audio", _inputs("audio")[:, :1])
    torch.testing.assert_close(image.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(audio.norm(dim=-1), torch.full((2,), 20.0))


def test_video_averages_over_clips(tiny):
    video = _inputs("video")[:, :2]  # (2, 2, 3, 2, 224, 224)
    per_clip = torch.stack([tiny("video", video[:, s : s + 1]) for s in range(2)], dim=1)
    torch.testing.assert_close(tiny("video", video), per_clip.mean(dim=1))


def test_image_is_a_video_of_one_repeated_frame(tiny):
    image = _inputs("image")
    as_video = image[:, None, :, None].expand(-1, 1, -1, 2, -1, -1)  # (B, 1, 3, 2, 224, 224)
    torch.testing.assert_close(tiny("image", image), tiny("video", as_video))


def test_rejects_input_without_clip_dim(tiny):
    with pytest.raises(ValueError, match=r"\(B, S, 3, 2, 224, 224\)"):
        tiny("video", torch.zeros(2, 3, 2, 224, 224))


def test_encode_text(tiny):
    tokens = torch.randint(0, 49408, (2, 77), generator=torch.Generator().manual_seed(0))
    assert tiny.encode_text(tokens).shape == (2, 32)


def test_frozen_and_stays_eval(tiny):
    assert not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not any(m.training for m in tiny.modules())


def test_same_seed_same_weights(tiny_cfg, tiny):
    again = ImageBindEncoder.from_config(OmegaConf.to_container(tiny_cfg))  # a plain dict works too
    other = ImageBindEncoder.from_config({**OmegaConf.to_container(tiny_cfg), "seed": 1})
    for (name, p), q, r in zip(tiny.state_dict().items(), again.state_dict().values(), other.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(tiny.state_dict()["model.modality_heads.vision.2.weight"], other.state_dict()["model.modality_heads.vision.2.weight"])


def test_tiny_is_tiny(tiny):
    assert count_parameters(tiny) < 3_000_000


def test_huge_config_builds_empty_with_imagebind_huge_size():
    encoder = ImageBindEncoder.from_config(OmegaConf.load(CONF / "imagebind_huge.yaml"), empty=True)
    assert count_parameters(encoder) == 1_200_781_057
    assert encoder.embed_dim == 1024
    assert encoder.device.type == "meta"


def test_checkpoint_round_trip(tmp_path, tiny_cfg, tiny):
    path = tmp_path / "imagebind_tiny.pth"
    torch.save(tiny.model.state_dict(), path)
    loaded = ImageBindEncoder.from_config({**OmegaConf.to_container(tiny_cfg), "checkpoint": str(path), "seed": 7})
    assert not any(p.requires_grad or p.device.type == "meta" for p in loaded.parameters())
    for modality in INPUT_SHAPES:
        x = _inputs(modality)
        assert torch.equal(loaded(modality, x), tiny(modality, x))


def test_missing_checkpoint_names_path(tmp_path, tiny_cfg):
    path = tmp_path / "nowhere" / "imagebind_huge.pth"
    with pytest.raises(ConfigError, match="not found.*imagebind_huge.pth state dict") as err:
        ImageBindEncoder.from_config({**OmegaConf.to_container(tiny_cfg), "checkpoint": str(path)})
    assert str(path) in str(err.value)


def test_mismatched_checkpoint_names_tensors_and_shapes(tmp_path, tiny_cfg, tiny):
    state = dict(tiny.model.state_dict())
    state["modality_heads.vision.2.weight"] = torch.zeros(16, 32)
    del state["modality_heads.audio.2.weight"]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError) as err:
        ImageBindEncoder.from_config({**OmegaConf.to_container(tiny_cfg), "checkpoint": str(path)})
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "modality_heads.vision.2.weight (16, 32) in file vs (32, 32) in model" in message
    assert "1 missing: modality_heads.audio.2.weight (32, 32)" in message
    assert "1 unexpected: extra.weight (3,)" in message


def test_many_mismatches_are_summarised(tmp_path, tiny_cfg):
    path = tmp_path / "empty.pth"
    torch.save({}, path)
    with pytest.raises(ConfigError, match=r"missing: .* and \d+ more"):
        ImageBindEncoder.from_config({**OmegaConf.to_container(tiny_cfg), "checkpoint": str(path)})
