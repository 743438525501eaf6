"""PANNs CNN14, the text -> audio task's default network (AudioLDM's FD and IS), built from panns-inference's model
class and a randomly initialised checkpoint saved in the layout of the Zenodo files."""

import argparse
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from fixtures.benchmark import write_audiocaps
from fixtures.commands import run_command

from nextmm.benchmark import features
from nextmm.benchmark.features import (
    PANNS_FILE,
    PannsCnn14,
    panns_cnn14_class,
    read_panns_checkpoint,
)
from nextmm.benchmark.metrics import GenerationScores
from nextmm.benchmark.run import main
from nextmm.errors import ConfigError


def panns_layout(model: dict) -> dict:
    """A checkpoint as PANNs' training saved it: the weights, the step, and the sampler's numpy index arrays."""
    sampler = {"indexes_per_class": [np.arange(4, dtype=np.int64), np.array([7, 2], dtype=np.int64)],
               "queue": [1, 0], "pointers_of_classes": [0, 1]}
    return {"iteration": 1000000, "model": model, "sampler": sampler}


def save_numpy1_names(checkpoint: dict, path):
    """torch.save, with numpy's array rebuilder named as numpy 1.x pickles it (the 2020 Zenodo files)."""
    torch.save(checkpoint, path)
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    pickle = next(name for name in entries if name.endswith("/data.pkl"))
    entries[pickle] = entries[pickle].replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct" in entries[pickle]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)


@pytest.fixture(scope="module")
def cnn14_file(tmp_path_factory):
    """A randomly initialised CNN14 at AudioLDM's 16 kHz settings, saved as Cnn14_16k_mAP=0.438.pth is laid out."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("panns") / PANNS_FILE
    torch.save(panns_layout(panns_cnn14_class()(**features.PANNS_SETTINGS).state_dict()), path)
    return path


@pytest.fixture(scope="module")
def panns(cnn14_file):
    return PannsCnn14(str(cnn14_file))


def waveforms(count: int = 4, seconds: float = 1.0) -> torch.Tensor:
    """Distinct 16 kHz clips: a tone per clip over a little seeded noise, (count, S)."""
    t = torch.arange(int(16000 * seconds)) / 16000
    noise = 0.01 * torch.randn(count, len(t), generator=torch.Generator().manual_seed(0))
    return torch.stack([0.3 * torch.sin(2 * torch.pi * (220 + 330 * i) * t) for i in range(count)]) + noise


def run_cli(argv, capsys):
    return run_command("benchmark", main, argv, capsys)


def audio_argv(data_root, output, *extra):
    return ["task=audiocaps_text_to_audio", f"data_root={data_root}", "model=tiny", "limit=2", "quiet=true",
            f"output={output}", "protocol.seconds=1", "protocol.num_inference_steps=1", *extra]


# ---------------------------------------------------------------------------------------------- the network
def test_outputs_are_audioldm_evals_2048_features_and_logits_before_the_sigmoid(panns):
    clips = waveforms()
    embedding, logits = panns(clips, "embedding"), panns(clips, "logits")
    assert panns.sample_rate == 16000 and panns.sizes == {"embedding": 2048, "logits": 527}
    assert embedding.shape == (4, 2048) and logits.shape == (4, 527) and (embedding >= 0).all()  # after the ReLU
    reference = panns.model(clips - clips.mean(dim=1, keepdim=True))  # panns-inference's own outputs
    assert torch.allclose(embedding, reference["embedding"])
    assert torch.allclose(torch.sigmoid(logits), reference["clipwise_output"], atol=1e-6)
    assert not torch.allclose(logits, reference["clipwise_output"])
    assert torch.allclose(panns(clips + 0.5, "embedding"), embedding, atol=1e-5)  # each clip's mean is removed


def test_inception_score_softmaxes_the_logits_and_is_1_for_one_class(panns):
    clips = waveforms()
    scores = GenerationScores({"inception_score": {"splits": 1}}, {"audio": panns}, torch.device("cpu"))
    scores.update(clips, None, "")
    p = panns(clips, "logits").double().softmax(dim=1)  # audioldm_eval's calculate_isc on "logits", one split
    expected = (p * (p.log() - p.mean(dim=0, keepdim=True).log())).sum(dim=1).mean().exp()
    assert scores.compute()["inception_score"] == pytest.approx(float(expected), rel=1e-4)
    # the same network with fc_audioset answering one class for every clip
    weight, bias = panns.model.fc_audioset.weight.detach().clone(), panns.model.fc_audioset.bias.detach().clone()
    try:
        with torch.no_grad():
            panns.model.fc_audioset.weight.zero_()
            panns.model.fc_audioset.bias.copy_(50 * torch.nn.functional.one_hot(torch.tensor(3), 527))
        single = GenerationScores({"inception_score": {"splits": 1}}, {"audio": panns}, torch.device("cpu"))
        single.update(clips, None, "")
        assert single.compute()["inception_score"] == pytest.approx(1.0, abs=1e-6)
    finally:
        with torch.no_grad():
            panns.model.fc_audioset.weight.copy_(weight)
            panns.model.fc_audioset.bias.copy_(bias)


@pytest.mark.slow  # one Frechet distance over 2048-d features: ~15 s of eigenvalues on one core
def test_fd_of_a_set_against_itself_is_zero(panns):
    clips = waveforms()
    scores = GenerationScores({"fd": {}}, {"audio": panns}, torch.device("cpu"))
    scores.update(clips, clips, "")
    spread = float(panns(clips, "embedding").double().var(dim=0).sum())  # the trace of one covariance
    assert abs(scores.compute()["fd"]) < 1e-5 * spread


# ------------------------------------------------------------------------------------------- the checkpoint
def test_the_checkpoint_is_read_with_weights_only(cnn14_file, monkeypatch):
    calls = []
    load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    network = PannsCnn14(str(cnn14_file))
    assert calls == [True]
    assert network.record["checkpoint"] == str(cnn14_file) and len(network.record["checkpoint_sha256"]) == 64


@pytest.mark.parametrize("numpy_names", ["numpy 2", "numpy 1"])
def test_the_training_samplers_numpy_arrays_load_under_either_numpys_names(tmp_path, numpy_names):
    path = tmp_path / "small.pth"
    checkpoint = panns_layout({"fc1.weight": torch.ones(2, 2)})
    torch.save(checkpoint, path) if numpy_names == "numpy 2" else save_numpy1_names(checkpoint, path)
    assert torch.equal(read_panns_checkpoint(path)["fc1.weight"], torch.ones(2, 2))


@pytest.mark.parametrize("content, message", [
    ({"model": {"w": torch.ones(1)}, "args": argparse.Namespace(lr=1)}, "Unsupported global"),
    ({"w": torch.ones(1)}, 'no "model" state dict'),
    ({"model": {"fc1.weight": torch.ones(2, 2)}}, "does not fit PANNs CNN14 at 16 kHz"),
], ids=["code", "no-model-key", "wrong-weights"])
def test_a_checkpoint_that_is_not_plain_cnn14_weights_is_one_line(tmp_path, content, message):
    path = tmp_path / PANNS_FILE
    torch.save(content, path)
    with pytest.raises(ConfigError) as error:
        PannsCnn14(str(path))
    assert message in str(error.value) and len(str(error.value).splitlines()) == 1
    if message == "Unsupported global":  # refused, with the re-save that keeps only the weights
        assert "weights_only=False" in str(error.value) and "torch.save({'model'" in str(error.value)


def test_the_32_khz_checkpoint_is_refused_naming_the_16_khz_one(tmp_path):
    torch.manual_seed(0)
    settings = {**features.PANNS_SETTINGS, "sample_rate": 32000, "window_size": 1024, "hop_size": 320, "fmax": 14000}
    path = tmp_path / "Cnn14_mAP=0.431.pth"
    torch.save(panns_layout(panns_cnn14_class()(**settings).state_dict()), path)
    with pytest.raises(ConfigError, match="tensors of another shape.*give Cnn14_16k_mAP=0.438.pth"):
        PannsCnn14(str(path))


# ------------------------------------------------------------------------------------------- the command
@pytest.mark.parametrize("where", ["given", "default"])
def test_a_missing_checkpoint_is_one_line_naming_zenodo_and_the_key(tmp_path, monkeypatch, capsys, where):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch hub's cache, empty
    data = write_audiocaps(tmp_path / "audiocaps")
    given = [f"features.audio.path={tmp_path / 'nowhere.pth'}"] if where == "given" else []
    code, _, err = run_cli(audio_argv(data, tmp_path / "r.json", *given), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth" in lines[0]
    assert "features.audio.path=" in lines[0]
    expected = tmp_path / ("nowhere.pth" if where == "given" else f"torch/hub/checkpoints/{PANNS_FILE}")
    assert str(expected) in lines[0]


@pytest.mark.slow
def test_text_to_audio_runs_end_to_end_through_panns_by_default(cnn14_file, tmp_path, capsys):
    output = tmp_path / "results.json"
    data = write_audiocaps(tmp_path / "audiocaps")
    # the file's name holds "=", so the override quotes it, as docs/real_weights.md says
    code, _, err = run_cli(audio_argv(data, output, f"features.audio.path='{cnn14_file}'"), capsys)
    assert code == 0, err
    entry = json.loads(output.read_text())["audiocaps_text_to_audio"]
    assert set(entry["metrics"]) == {"fd", "inception_score", "inception_score_std"}
    assert entry["metrics"]["fd"] > 0 and entry["metrics"]["inception_score"] >= 1
    assert entry["protocol"]["features"]["audio"]["_target_"] == "nextmm.benchmark.features.PannsCnn14"
    network = entry["protocol"]["networks"]["audio"]
    assert network["network"].startswith("PANNs CNN14, 16 kHz") and network["checkpoint"] == str(cnn14_file)
    assert network["settings"]["sample_rate"] == 16000 and len(network["checkpoint_sha256"]) == 64
    assert entry["versions"]["panns-inference"] != "not installed"


@pytest.mark.slow  # a fresh interpreter: ~3 s
def test_building_cnn14_runs_no_download_and_not_the_packages_init(tmp_path):
    # panns_inference/__init__ imports its config module, which shells out to wget for AudioSet's labels
    code = ("import os, sys; os.system = None\n"
            "from nextmm.benchmark.features import panns_cnn14_class\n"
            "assert panns_cnn14_class().__name__ == 'Cnn14'\n"
            "assert 'panns_inference.config' not in sys.modules and 'panns_inference' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "HOME": str(tmp_path)}, check=True)
    assert not (tmp_path / "panns_data").exists()
