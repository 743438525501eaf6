"""Weight files that could run code are refused in one line, before anything runs; nothing in them runs."""

import os
import pickle
import shutil

import pytest
import torch

from nextmm import cli
from nextmm.cli.generate import main
from nextmm.weights.trained import save_trained_parts


class Payload:
    """Unpickling this would create the file named ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def folders(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("malicious")
    marker = root / "RAN"
    good = save_trained_parts(tiny_model, root / "good")
    pickled = shutil.copytree(good, root / "pickled_projectors")
    (pickled / "projectors.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    bin_adapter = shutil.copytree(good, root / "bin_adapter")
    (bin_adapter / "adapter" / "adapter_model.safetensors").unlink()
    torch.save({"x": Payload(marker)}, bin_adapter / "adapter" / "adapter_model.bin")
    torch.save({"x": Payload(marker)}, root / "evil.pth")
    return root, marker


@pytest.mark.parametrize("overrides, message", [
    (["model={root}/pickled_projectors"], "projectors.safetensors is not a valid safetensors file"),
    (["model={root}/bin_adapter"], "holds adapter_model.bin, a pickle, which nextmm never loads"),
    (["model=tiny", "model.encoder.checkpoint={root}/evil.pth"], "evil.pth cannot be read as plain tensors"),
], ids=["pickle-as-safetensors", "pickled-adapter", "pickled-encoder"])
def test_a_malicious_checkpoint_is_refused_in_one_line_and_never_runs(folders, tmp_path, capsys, overrides, message):
    root, marker = folders
    argv = ["prompt=hi", "max_new_tokens=2", "num_inference_steps=1", "quiet=true", f"output_dir={tmp_path / 'o'}",
            *(o.format(root=root) for o in overrides)]
    with pytest.raises(SystemExit) as exit_:
        cli.run("generate", main, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert not marker.exists()
    assert not (tmp_path / "o").exists()
