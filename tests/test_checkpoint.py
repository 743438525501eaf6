import pytest
import torch
from safetensors.torch import load_file, save_file

from nextmm.errors import ConfigError
from nextmm.model import NextMM
from nextmm.training.trainable import set_trainable
from nextmm.weights.trained import load_trained_parts, save_trained_parts


def _perturb_trainable(model):
    set_trainable(model, ["lora", "input_projector", "output_projectors", "new_tokens"])
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = NextMM.from_config("tiny")
    _perturb_trainable(model)
    folder = save_trained_parts(model, tmp_path_factory.mktemp("ckpt") / "trained")
    return model, folder


def test_folder_layout_is_safe_formats_only(saved):
    _, folder = saved
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"projectors.safetensors", "adapter/adapter_model.safetensors", "adapter/adapter_config.json",
            "config.yaml"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)


def test_round_trip_restores_every_trained_tensor(saved):
    model, folder = saved
    loaded = NextMM.from_config(folder)  # the folder's config.yaml points at the parts beside it
    original = dict(model.named_parameters())
    for name, param in loaded.named_parameters():
        torch.testing.assert_close(param, original[name], msg=name)


def test_missing_folder_names_the_expected_file(tmp_path):
    model = NextMM.from_config("tiny")
    with pytest.raises(ConfigError, match="projectors.safetensors"):
        load_trained_parts(model, tmp_path / "nowhere")


def test_wrong_shape_names_the_tensor_and_both_shapes(saved, tmp_path):
    _, folder = saved
    state = load_file(folder / "projectors.safetensors")
    state["input_projector.proj.weight"] = torch.zeros(3, 3)
    save_file(state, folder.parent / "bad.safetensors")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter").symlink_to(folder / "adapter")
    (folder.parent / "bad.safetensors").rename(bad / "projectors.safetensors")
    with pytest.raises(ConfigError, match=r"input_projector\.proj\.weight has shape \(3, 3\), model expects"):
        load_trained_parts(NextMM.from_config("tiny"), bad)


def test_saving_over_an_existing_folder_replaces_it(saved):
    model, folder = saved
    (folder / "stale.txt").write_text("old")
    save_trained_parts(model, folder)
    assert not (folder / "stale.txt").exists()
    assert not list(folder.parent.glob(".trained*"))
