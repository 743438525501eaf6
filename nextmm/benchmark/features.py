"""The networks the generation metrics look through, and the media batches they are fed.

Each network is built from a config key of nextmm/conf/benchmark.yaml (``features.<key>``, a Hydra ``_target_``
with its arguments), so a user points it at weights downloaded once, and a test swaps in a tiny one:

    image   uint8 (N, 3, H, W) -> (N, D): FID on images and on video frames (default: torch-fidelity's InceptionV3,
            2048 pool features, the network FID is defined on)
    audio   float (N, S) waveforms at its ``sample_rate`` -> ("embedding") (N, D) for FD, ("logits") (N, C) for IS
            (default: PANNs CNN14 at 16 kHz as AudioLDM's evaluation builds it, 2048-d embeddings and 527 AudioSet
            logits; ``AudioClassifier``: a transformers AudioSet classifier such as AST instead)
    clip    a loader of (CLIPModel, CLIPProcessor) for torchmetrics' CLIPScore (CLIP score and CLIPSIM)
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from nextmm.errors import ConfigError, MediaError
from nextmm.weights.safe import read_plain_tensors

log = logging.getLogger(__name__)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ---------------------------------------------------------------------------------------------- networks
def inception(weights: str | None = None, features: int = 2048) -> nn.Module:
    """torch-fidelity's InceptionV3 as torchmetrics' FID uses it: uint8 (N, 3, H, W) -> (N, features).

    ``weights``: torch-fidelity's pt_inception-2015-12-05 file; None = torch hub's cache, downloaded there on first
    use. The file is read once through torch's weights-only unpickler before torch-fidelity loads it.
    """
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = Path(weights).expanduser() if weights else Path(torch.hub.get_dir()) / "checkpoints" / Path(URL_INCEPTION_V3).name
    if weights and not path.is_file():
        raise ConfigError(f"features.image.weights={weights}: no such file (torch-fidelity's {Path(URL_INCEPTION_V3).name})")
    if not path.is_file():
        log.info("downloading the FID Inception weights to %s", path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(path), progress=False)
        except Exception as error:  # no network: URLError, socket and HTTP errors alike
            raise ConfigError(f"cannot download the FID Inception weights ({_first_line(error)}): fetch "
                              f"{URL_INCEPTION_V3} and set features.image.weights=<that file>") from None
    read_plain_tensors(path)  # refuses a file that holds code before torch-fidelity unpickles it
    network = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(features)],
                                 feature_extractor_weights_path=str(path))
    network.num_features = features
    network.record = {"network": "torch-fidelity InceptionV3", "checkpoint": str(path)}
    return network


def clip(path: str) -> Callable[[], tuple[nn.Module, object]]:
    """A loader of CLIP (a hub name or a folder holding CLIPModel and CLIPProcessor) for torchmetrics' CLIPScore."""
    def load():
        from transformers import CLIPModel, CLIPProcessor

        try:
            model = CLIPModel.from_pretrained(path, use_safetensors=True).eval()
            return ClipFeatures(model), CLIPProcessor.from_pretrained(path)
        except OSError as error:
            raise ConfigError(f"cannot load CLIP from features.clip.path={path} ({_first_line(error)}): download it "
                              "(huggingface-cli download <name>) or set features.clip.path=<a local folder>") from None

    return load


class ClipFeatures(nn.Module):
    """A CLIPModel whose ``get_image_features`` / ``get_text_features`` give the projected embeddings (N, P) as
    tensors: transformers 5 returns an output object (the embeddings in ``pooler_output``), torchmetrics 1.9's
    CLIPScore divides what it gets by its norm."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _embeddings(self.model.get_image_features(pixel_values=pixel_values))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _embeddings(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))


def _embeddings(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


# PANNs CNN14 as AudioLDM's evaluation builds it for 16 kHz audio (audioldm_eval's EvaluationHelper(16000)): a
# 512-sample window, hop 160, 64 mel bins over 50-8000 Hz, the 527 AudioSet classes; its checkpoint is the 16 kHz one.
PANNS_SETTINGS = {"sample_rate": 16000, "window_size": 512, "hop_size": 160, "mel_bins": 64, "fmin": 50, "fmax": 8000,
                  "classes_num": 527}
PANNS_FILE = "Cnn14_16k_mAP=0.438.pth"
PANNS_URL = "https://zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth"
PANNS_RESAVE = ("keep only its weights: python -c \"import torch; c = torch.load('<file>', weights_only=False); "
                "torch.save({'model': c['model']}, '<file>')\" (on a file you trust), or download it again")


class PannsCnn14(nn.Module):
    """PANNs CNN14 (panns-inference's ``Cnn14``) at 16 kHz, AudioLDM's FD and IS network: waveforms (N, S) at 16 kHz
    -> "embedding" (N, 2048), the ReLU of its ``fc1`` (audioldm_eval's "2048" features, FD), or "logits" (N, 527),
    ``fc_audioset`` before the sigmoid (audioldm_eval's "logits", which its IS softmaxes).

    ``path``: the Cnn14_16k_mAP=0.438.pth file from Zenodo record 3987831 (a dict whose "model" is the state dict);
    None = torch hub's cache folder. Nothing is downloaded: a missing file is one line saying where to get it.
    """

    def __init__(self, path: str | None = None):
        super().__init__()
        file = Path(path).expanduser() if path else Path(torch.hub.get_dir()) / "checkpoints" / PANNS_FILE
        if path and not file.is_file():
            raise ConfigError(f"features.audio.path={path}: no such file; download {PANNS_URL} (Zenodo record "
                              "3987831: PANNs CNN14 at 16 kHz) and give its path")
        if not file.is_file():
            raise ConfigError(f"no PANNs CNN14 checkpoint at {file} (features.audio.path=null: torch hub's cache): "
                              f"download {PANNS_URL} (Zenodo record 3987831) there, or set \"features.audio.path='<the "
                              "file>'\" (quoted: its name holds '=')")
        state = read_panns_checkpoint(file)
        self.model = panns_cnn14_class()(**PANNS_SETTINGS).eval()
        expected = self.model.state_dict()
        problems = {"missing": [k for k in expected if k not in state],
                    "unexpected": [k for k in state if k not in expected],
                    "of another shape": [k for k in expected if k in state and state[k].shape != expected[k].shape]}
        if any(problems.values()):  # the 32 kHz file: every STFT and mel tensor of another shape
            found = "; ".join(f"{len(keys)} tensors {what} (first: {keys[0]})"
                              for what, keys in problems.items() if keys)
            raise ConfigError(f"{file} does not fit PANNs CNN14 at 16 kHz ({found}): give {PANNS_FILE}, the 16 kHz "
                              "checkpoint AudioLDM's evaluation uses (not the 32 kHz Cnn14_mAP=0.431.pth)")
        self.model.load_state_dict(state)
        self.sample_rate = PANNS_SETTINGS["sample_rate"]
        self.sizes = {"embedding": self.model.fc1.out_features, "logits": self.model.fc_audioset.out_features}
        self.record = {"network": "PANNs CNN14, 16 kHz (panns-inference's Cnn14, AudioLDM's evaluation settings)",
                       "settings": dict(PANNS_SETTINGS), "checkpoint": str(file), "checkpoint_sha256": sha256(file)}

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor, output: str) -> torch.Tensor:
        if output not in self.sizes:
            raise ValueError(f"output={output!r}: choose from {', '.join(self.sizes)}")
        waveforms = waveforms.float()
        waveforms = waveforms - waveforms.mean(dim=1, keepdim=True)  # audioldm_eval removes each clip's mean first
        embedding = self.model(waveforms)["embedding"]  # (N, 2048): ReLU(fc1(pooled)); dropout is off in eval
        return embedding if output == "embedding" else self.model.fc_audioset(embedding)  # (N, 527)


def panns_cnn14_class() -> type[nn.Module]:
    """panns-inference's ``Cnn14`` class. Its package ``__init__`` imports a config module that fetches AudioSet's
    label list with wget when ~/panns_data lacks it, at import time; the model module needs none of that, so it is
    imported under a package whose ``__init__`` is not run (nothing else in panns-inference is used)."""
    if "panns_inference.models" in sys.modules:
        return sys.modules["panns_inference.models"].Cnn14
    spec = importlib.util.find_spec("panns_inference")
    if spec is None:
        raise ConfigError("PANNs CNN14 needs the panns-inference package: pip install -e \".[benchmark]\" (or "
                          "features.audio._target_=nextmm.benchmark.features.AudioClassifier for AST)")
    if "panns_inference" in sys.modules:  # imported in full by someone else already
        return importlib.import_module("panns_inference.models").Cnn14
    sys.modules["panns_inference"] = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
    try:
        return importlib.import_module("panns_inference.models").Cnn14
    finally:
        del sys.modules["panns_inference"]  # a later `import panns_inference` runs it as usual


def read_panns_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a PANNs checkpoint ({"iteration", "model", "sampler"}, as PANNs' training saved it), read
    with torch's weights-only unpickler. Beside tensors, the file holds the training sampler's index arrays (numpy
    int64), so numpy's array rebuilding (no code of the file's choosing) is allowed for this one read; anything else
    is refused in one line."""
    import numpy as np

    rebuild = np.zeros(1, dtype=np.int64).__reduce__()[0]  # numpy's _reconstruct, under either numpy's module name
    numpy_arrays = [(rebuild, "numpy.core.multiarray._reconstruct"), (rebuild, "numpy._core.multiarray._reconstruct"),
                    np.ndarray, np.dtype, type(np.dtype(np.int64))]
    with torch.serialization.safe_globals(numpy_arrays):
        checkpoint = read_plain_tensors(path, advice=PANNS_RESAVE.replace("<file>", str(path)))
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path} is not a PANNs checkpoint: it holds no \"model\" state dict of tensors; give "
                          f"{PANNS_FILE} from {PANNS_URL}")
    return state


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


AST = "MIT/ast-finetuned-audioset-10-10-0.4593"


class AudioClassifier(nn.Module):
    """A transformers audio classifier (AutoModelForAudioClassification and its feature extractor, from a hub name
    or a folder; None = AST on AudioSet): waveforms (N, S) at ``sample_rate`` -> "embedding" (N, D), the mean of its
    last hidden states over time, or "logits" (N, C). Not AudioLDM's network: its FD and IS differ from PANNs'."""

    def __init__(self, path: str | None = None):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        path = path or AST
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(path)
            self.model = AutoModelForAudioClassification.from_pretrained(path, use_safetensors=True).eval()
        except OSError as error:
            raise ConfigError(f"cannot load the audio classifier features.audio.path={path} ({_first_line(error)}): "
                              "download it or set features.audio.path=<a local folder>") from None
        self.sample_rate = int(self.extractor.sampling_rate)
        self.sizes = {"embedding": self.model.config.hidden_size, "logits": self.model.config.num_labels}
        self.record = {"network": f"transformers {type(self.model).__name__}", "checkpoint": str(path)}

    @torch.no_grad()
    def forward(self, waveforms: torch.Tensor, output: str) -> torch.Tensor:
        device = next(self.model.parameters()).device
        inputs = self.extractor([w.cpu().float().numpy() for w in waveforms], sampling_rate=self.sample_rate,
                                return_tensors="pt")
        out = self.model(**{k: v.to(device) for k, v in inputs.items()}, output_hidden_states=True)
        return out.logits if output == "logits" else out.hidden_states[-1].mean(dim=1)


class AudioView(nn.Module):
    """One output of an audio network as the single-argument module torchmetrics calls: (N, S) -> (N, D)."""

    def __init__(self, network: nn.Module, output: str):
        super().__init__()
        self.network, self.output = network, output
        self.num_features = network.sizes[output]

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.network(waveforms, self.output)


# ----------------------------------------------------------------------------------------------- media
def fit_image(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """A picture centre-cropped to the aspect and resized (bicubic) to height x width: uint8 (3, H, W)."""
    fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(fitted).copy()).permute(2, 0, 1)


def image_batch(source: Image.Image | str | Path, height: int, width: int) -> torch.Tensor:
    """An image (PIL or a file) -> uint8 (1, 3, H, W)."""
    if isinstance(source, (str, Path)):
        try:
            with Image.open(source) as image:
                return fit_image(image, height, width)[None]
        except OSError as error:
            raise MediaError(f"cannot read the image {source}: {_first_line(error)}") from None
    return fit_image(source, height, width)[None]


def frames_batch(source: np.ndarray | str | Path, height: int, width: int, count: int) -> torch.Tensor:
    """A video (uint8 frames (F, H', W', 3) or a file) -> ``count`` evenly spaced frames, uint8 (count, 3, H, W)."""
    frames = read_frames(source, count) if isinstance(source, (str, Path)) else source
    chosen = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return torch.stack([fit_image(Image.fromarray(frames[i]), height, width) for i in chosen])


def read_frames(path: str | Path, count: int) -> list[np.ndarray]:
    """``count`` evenly spaced frames of a video file, decoded in one pass (the others are dropped as they come)."""
    import imageio_ffmpeg

    try:
        total, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist())
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for i, raw in enumerate(reader) if i in wanted]
    except (OSError, RuntimeError, StopIteration) as error:
        raise MediaError(f"cannot read the video {path}: {_first_line(error)}") from None
    if not frames:
        raise MediaError(f"the video {path} holds no frames")
    return frames


def waveform_batch(source: tuple[np.ndarray, int] | str | Path, sample_rate: int, seconds: float) -> torch.Tensor:
    """Audio ((samples,), rate) or a file -> mono at ``sample_rate``, cut or zero-padded to ``seconds``: (1, S)."""
    import torchaudio

    if isinstance(source, (str, Path)):
        import soundfile

        try:
            samples, rate = soundfile.read(str(source), dtype="float32", always_2d=True)  # (S, channels)
        except (OSError, RuntimeError) as error:
            raise MediaError(f"cannot read the audio {source}: {_first_line(error)}") from None
        waveform = torch.from_numpy(samples.mean(axis=1))
    else:
        waveform, rate = torch.as_tensor(source[0], dtype=torch.float32).reshape(-1), source[1]
    waveform = torchaudio.functional.resample(waveform, int(rate), sample_rate) if rate != sample_rate else waveform
    length = round(seconds * sample_rate)
    return torch.nn.functional.pad(waveform[:length], (0, max(0, length - len(waveform))))[None]
