"""nextmm.weights.download without network: what to place where, resumable URL downloads, file selection."""

import io
import urllib.error

import pytest

from nextmm import cli
from nextmm.errors import UserError
from nextmm.weights import download
from nextmm.weights.required import IMAGEBIND_URL, PARTS


def _refuse(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def _hub_must_not_be_called(*args, **kwargs):
    raise AssertionError("the Hub was called although HF_HUB_OFFLINE=1")


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(download, "urlopen", _refuse)
    for name in ("fetch_pipeline", "fetch_hub_files"):
        monkeypatch.setattr(download, name, _hub_must_not_be_called)


def test_offline_says_what_to_place_where_and_writes_nothing(offline, tmp_path, capsys):
    dest = tmp_path / "checkpoints"
    with pytest.raises(SystemExit) as done:
        cli.run("download", download.main, [f"dest={dest}"])
    out, err = capsys.readouterr()
    assert done.value.code == 2
    not_info = [line for line in err.strip().splitlines() if not line.startswith("INFO nextmm.weights.download: ")]
    assert len(not_info) == 1 and not_info[0].startswith("error: could not download")
    for part in PARTS.values():
        assert str(dest / part.folder) in out
        assert part.source in out
    for repo in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "cvssp/audioldm-l-full",
                 "cerspense/zeroscope_v2_576w", "ChocoWu/nextgpt_7b_tiva_v0", "lmsys/vicuna-7b-delta-v0"):
        assert repo in out
    assert IMAGEBIND_URL in out and "apply_delta" in out
    assert "python -m nextmm convert" in out
    assert not dest.exists()  # nothing half-written


def test_offline_skips_what_is_already_there(offline, tmp_path):
    (tmp_path / "stable-diffusion-v1-5").mkdir()
    (tmp_path / "stable-diffusion-v1-5" / "model_index.json").write_text("{}")
    report = download.download(["sd", "audioldm", "vicuna"], tmp_path, quiet=True)
    assert report.present == ["sd"] and list(report.failed) == ["audioldm"] and report.manual == ["vicuna"]


def test_an_unreachable_network_is_tried_once(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls = []

    def unreachable(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(download, "fetch_pipeline", unreachable)
    monkeypatch.setattr(download, "urlopen", _hub_must_not_be_called)
    report = download.download(["sd", "audioldm", "zeroscope", "imagebind"], tmp_path, quiet=True)
    assert len(calls) == 1 and list(report.failed) == ["sd", "audioldm", "zeroscope", "imagebind"]


def test_unknown_part_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown part.*llama"):
        download.download(["llama"], tmp_path)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, status: int, fail_after: int | None = None):
        super().__init__(data)
        self.status, self.headers, self.fail_after = status, {"Content-Length": str(len(data))}, fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset")
        return super().read(min(size, 3) if size > 0 else size)


def test_url_download_resumes_with_a_range_request(monkeypatch, tmp_path):
    payload = bytes(range(200))
    target = tmp_path / "imagebind_huge.pth"
    (tmp_path / "imagebind_huge.pth.part").write_bytes(payload[:50])
    asked = []

    def server(request, timeout):
        asked.append(request.get_header("Range"))
        return FakeResponse(payload[50:], status=206)

    monkeypatch.setattr(download, "urlopen", server)
    download.fetch_url(IMAGEBIND_URL, target, quiet=True)
    assert asked == ["bytes=50-"]
    assert target.read_bytes() == payload and not (tmp_path / "imagebind_huge.pth.part").exists()


def test_url_download_starts_over_when_the_range_is_ignored(monkeypatch, tmp_path):
    payload = b"0123456789" * 5
    (tmp_path / "f.part").write_bytes(b"garbage")
    monkeypatch.setattr(download, "urlopen", lambda request, timeout: FakeResponse(payload, status=200))
    download.fetch_url("https://example.invalid/f", tmp_path / "f", quiet=True)
    assert (tmp_path / "f").read_bytes() == payload


def test_an_interrupted_download_leaves_only_the_part_file(monkeypatch, tmp_path):
    payload = b"x" * 30
    monkeypatch.setattr(download, "urlopen", lambda request, timeout: FakeResponse(payload, 200, fail_after=9))
    with pytest.raises(ConnectionResetError):
        download.fetch_url("https://example.invalid/f", tmp_path / "f", quiet=True)
    assert not (tmp_path / "f").exists() and (tmp_path / "f.part").read_bytes() == payload[:9]


def test_pipeline_files_are_what_from_pretrained_reads():
    repo = [
        "model_index.json", "README.md", "v1-5-pruned.ckpt", "v1-5-pruned-emaonly.safetensors",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.non_ema.safetensors",
        "unet/diffusion_flax_model.msgpack",
        "text_encoder/config.json", "text_encoder/pytorch_model.bin", "text_encoder/model.fp16.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
        "vae/diffusion_pytorch_model-00002-of-00002.safetensors", "vae/diffusion_pytorch_model.safetensors.index.json",
        "vae/diffusion_pytorch_model.safetensors.index.fp16.json",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json", "zs2_576w/text2video_pytorch_model.pth", "zs2_576w/config.json",
    ]
    chosen = download.pipeline_files(repo, ["unet", "text_encoder", "vae", "tokenizer", "scheduler"])
    assert sorted(chosen) == sorted([
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/config.json", "text_encoder/pytorch_model.bin",  # no plain safetensors: the bin
        "vae/config.json", "vae/diffusion_pytorch_model-00001-of-00002.safetensors",
        "vae/diffusion_pytorch_model-00002-of-00002.safetensors", "vae/diffusion_pytorch_model.safetensors.index.json",
        "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
    ])


def test_pipeline_fetch_writes_model_index_last(monkeypatch, tmp_path):
    import json

    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    calls = []
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "safety_checker": [None, None], "scheduler": ["diffusers", "PNDMScheduler"]}

    def hf_hub_download(repo_id, filename, local_dir=None, **kwargs):
        calls.append(("file", filename, local_dir))
        path = (tmp_path / "cache" if local_dir is None else local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(index))
        return str(path)

    def snapshot_download(repo_id, local_dir, allow_patterns, **kwargs):
        calls.append(("snapshot", sorted(allow_patterns), local_dir))

    class Api:
        def list_repo_files(self, repo_id):
            return ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                    "unet/diffusion_pytorch_model.fp16.safetensors", "safety_checker/model.safetensors",
                    "scheduler/scheduler_config.json"]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    report = download.download(["sd"], tmp_path / "ckpt", quiet=True)
    folder = tmp_path / "ckpt" / "stable-diffusion-v1-5"
    assert report.fetched == ["sd"]
    assert calls == [
        ("file", "model_index.json", None),
        ("snapshot", ["scheduler/scheduler_config.json", "unet/config.json",
                      "unet/diffusion_pytorch_model.safetensors"], folder),
        ("file", "model_index.json", folder),
    ]
