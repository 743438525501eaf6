"""The real weights a model config needs: where each part comes from, and one message for what is missing.

    missing_weights(cfg) -> [Missing(path, what, how), ...]   every needed file or folder that is not there
    check_weights(cfg)                                        raises one ConfigError line listing all of them

A config whose paths are all null (``tiny``) needs nothing. ``PARTS`` is the catalogue that
``python -m nextmm download`` fetches from; docs/real_weights.md describes each part at length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from nextmm.config import resolve_path
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES
from nextmm.weights.trained import pickled_adapter

GUIDE = "docs/real_weights.md"
IMAGEBIND_URL = "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
DEFAULT_DEST = "checkpoints"
CONVERTED_FOLDER = "nextgpt_7b"  # where download converts the official checkpoint to, under dest


@dataclass(frozen=True)
class Part:
    """One downloadable (or hand-made) part of the real model.

    ``kind``: "url" (one file from ``source``), "diffusers" (a Hub pipeline repo), "hub" (the listed
    ``files`` of a Hub repo) or "manual" (cannot be downloaded; built by hand). ``marker`` is the file
    whose presence means the part is complete; download writes it last. Empty for a single file.
    """

    name: str
    folder: str
    what: str
    source: str
    kind: str
    marker: str
    expected: str
    files: tuple[str, ...] = ()


PARTS: dict[str, Part] = {
    part.name: part
    for part in (
        Part(
            "imagebind", "imagebind_huge.pth", "ImageBind-huge encoder weights", IMAGEBIND_URL, "url", "",
            "the file imagebind_huge.pth, a plain state dict of 1.2 B float32 parameters (about 4.8 GB)",
        ),
        Part(
            "vicuna", "vicuna-7b-v0", "Vicuna-7B v0 language model and tokenizer", "lmsys/vicuna-7b-delta-v0",
            "manual", "config.json",
            "a transformers LlamaForCausalLM folder: config.json, generation_config.json, tokenizer.model, "
            "tokenizer_config.json, special_tokens_map.json and the weights (*.safetensors or pytorch_model-*.bin)",
        ),
        Part(
            "sd", "stable-diffusion-v1-5", "Stable Diffusion 1.5 image decoder",
            "stable-diffusion-v1-5/stable-diffusion-v1-5", "diffusers", "model_index.json",
            "a diffusers folder: model_index.json and unet/, vae/, text_encoder/, tokenizer/, scheduler/, "
            "safety_checker/, feature_extractor/, each with its config and weights",
        ),
        Part(
            "audioldm", "audioldm-l-full", "AudioLDM-l-full audio decoder", "cvssp/audioldm-l-full", "diffusers",
            "model_index.json",
            "a diffusers folder: model_index.json and unet/, vae/, text_encoder/, tokenizer/, scheduler/, "
            "vocoder/, each with its config and weights",
        ),
        Part(
            "zeroscope", "zeroscope_v2_576w", "Zeroscope v2 576w video decoder", "cerspense/zeroscope_v2_576w",
            "diffusers", "model_index.json",
            "a diffusers folder: model_index.json and unet/, vae/, text_encoder/, tokenizer/, scheduler/, "
            "each with its config and weights",
        ),
        Part(
            "nextgpt", "nextgpt_7b_tiva_v0", "official NExT-GPT 7b_tiva_v0 checkpoint (to convert)",
            "ChocoWu/nextgpt_7b_tiva_v0", "hub", "pytorch_model.pt",
            "pytorch_model.pt and the tokenizer files (tokenizer.model, tokenizer_config.json, "
            "special_tokens_map.json, added_tokens.json)",
            files=("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "config.json", "pytorch_model.pt"),
        ),
    )
}

# The config slot each part fills in a model config such as nextmm/conf/model/nextgpt_7b.yaml.
SLOT_PARTS = {
    "encoder.checkpoint": "imagebind",
    "llm.path": "vicuna",
    "llm.tokenizer": "vicuna",
    "decoders.image.path": "sd",
    "decoders.audio.path": "audioldm",
    "decoders.video.path": "zeroscope",
    "trained": "nextgpt",
}


class Missing(NamedTuple):
    """A needed file or folder that is not there: its path (as the config gives it), what it is, how to get it."""

    path: str
    what: str
    how: str


def part_present(part: Part, path: str | Path) -> bool:
    """Whether ``path`` holds ``part`` complete (its marker file; the file itself for a single file)."""
    path = Path(path)
    return path.is_file() if not part.marker else (path / part.marker).is_file()


def is_trained_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "projectors.safetensors").is_file() and (path / "adapter" / "adapter_model.safetensors").is_file()


def is_tokenizer_folder(path: str | Path) -> bool:
    path = Path(path)
    return any((path / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def missing_weights(cfg: Mapping, *, trained: bool = True) -> list[Missing]:
    """Every file or folder a non-empty build of ``cfg`` needs and does not find, in config order.

    Paths resolve as the loaders resolve them (working directory first, then the project root). A path
    the config names twice (Vicuna's folder is also its tokenizer folder) is listed once. ``trained=False``
    leaves out the trained parts (a build with ``load_trained=False``).
    """
    needed: list[tuple[str, str | None]] = [
        ("encoder.checkpoint", cfg["encoder"].get("checkpoint")),
        ("llm.path", cfg["llm"].get("path")),
        ("llm.tokenizer", cfg["llm"].get("tokenizer")),
    ]
    needed += [(f"decoders.{m}.path", cfg["decoders"][m].get("path")) for m in MODALITIES if m in cfg["decoders"]]
    if trained:
        needed.append(("trained", cfg.get("trained")))
    missing, seen = [], set()
    for slot, value in needed:
        if value is None or str(value) in seen:
            continue
        seen.add(str(value))
        path = resolve_path(value)
        if not _slot_present(slot, path):
            missing.append(_describe(slot, str(value)))
    return missing


def check_weights(cfg: Mapping, *, trained: bool = True) -> None:
    """Raise one ConfigError line naming every missing path, what it is and how to get it."""
    missing = missing_weights(cfg, trained=trained)
    if not missing:
        return
    listed = "; ".join(f"{m.path} ({m.what}: {m.how})" for m in missing)
    name = cfg.get("name", "this model")
    raise ConfigError(
        f"{len(missing)} weight path(s) missing for model {name}: {listed}. "
        f"`python -m nextmm download` fetches every public part; {GUIDE} explains each"
    )


def _slot_present(slot: str, path: Path) -> bool:
    if slot == "encoder.checkpoint":
        return path.is_file()
    if slot == "llm.path":
        return (path / "config.json").is_file()
    if slot == "llm.tokenizer":
        return is_tokenizer_folder(path)
    if slot == "trained":
        return is_trained_folder(path)
    return (path / "model_index.json").is_file()  # a diffusers pipeline folder


def _describe(slot: str, path: str) -> Missing:
    part = PARTS[SLOT_PARTS[slot]]
    target = Path(path)
    dest = "" if target.parent.as_posix() == DEFAULT_DEST else f" dest={target.parent.as_posix()}"
    if slot == "llm.tokenizer":
        return Missing(path, "LLM tokenizer folder", f"Vicuna-7B v0's folder holds it; see {GUIDE}#vicuna-7b-v0")
    if part.kind == "manual":
        return Missing(path, f"{part.what}, a transformers folder with config.json",
                       f"build it from LLaMA-7B and {part.source} with FastChat's apply_delta; "
                       f"see {GUIDE}#vicuna-7b-v0")
    if slot == "trained":
        if (target / "adapter" / "adapter_model.bin").is_file():
            return Missing(path, "nextmm trained parts, refused", pickled_adapter(target / "adapter"))
        what = "nextmm trained parts, a folder with projectors.safetensors and adapter/"
        if target.name == CONVERTED_FOLDER:
            return Missing(path, what, f"python -m nextmm download parts=[nextgpt]{dest} (downloads and converts "
                                       f"{part.source})")
        return Missing(path, what, f"python -m nextmm download parts=[nextgpt] convert=false, then python -m "
                                   f"nextmm convert source={DEFAULT_DEST}/{part.folder} output={path}; or train one "
                                   "with python -m nextmm train")
    what = f"{part.what}, {'a diffusers folder' if part.kind == 'diffusers' else 'a state-dict file'}"
    if target.name == part.folder:
        return Missing(path, what, f"python -m nextmm download parts=[{part.name}]{dest}")
    return Missing(path, what, f"python -m nextmm download parts=[{part.name}] writes "
                                    f"{DEFAULT_DEST}/{part.folder}; move it to {path}")
