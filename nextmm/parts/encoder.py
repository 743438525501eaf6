"""The frozen ImageBind encoder: one embedding per image, audio clip or video (and text, for retrieval).

ImageBind's model code comes from the `imagebind-unofficial` distribution (Meta's code, licence
CC BY-NC-SA 4.0). Inputs are what `nextmm.parts.preprocess` produces:

    image  (B, 3, 224, 224)
    audio  (B, S, 1, 128, 204)     S clips of 2 s (3 by default), averaged by ImageBind
    video  (B, S, 3, 2, 224, 224)  S = clips x spatial crops (5 x 3 by default), averaged likewise
    text   (B, 77)                 CLIP token ids
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nextmm.config import resolve_path
from nextmm.errors import ConfigError
from nextmm.modality import check_modality
from nextmm.weights.safe import read_plain_tensors

logger = logging.getLogger(__name__)

# ImageBind's ModalityType values; image and video share the vision tower (an image is a 1-frame video).
IMAGEBIND_MODALITY = {"image": "vision", "audio": "audio", "video": "vision"}

# The input rank ImageBind needs per modality. Its forward averages over dim 1 whenever ndim >= 5, so a
# single-clip video (B, 3, 2, H, W) would be silently misread as 3 clips: demand the clips dim instead.
INPUT_NDIM = {"image": 4, "audio": 5, "video": 6}
INPUT_LAYOUT = {
    "image": "(B, 3, 224, 224)",
    "audio": "(B, S, 1, 128, 204)",
    "video": "(B, S, 3, 2, 224, 224)",
}
TEXT_LENGTH = 77  # ImageBind's text context, in CLIP tokens


def load_imagebind_model_module() -> types.ModuleType:
    """Import `imagebind.models.imagebind_model` without running `imagebind/__init__.py`.

    The package `__init__` imports `imagebind.data`, which needs `pkg_resources` (gone from current
    setuptools) and `pytorchvideo` (imports a torchvision module removed long ago), so a plain
    `import imagebind.models.imagebind_model` fails on this stack. The model code itself needs none
    of that. We register an empty package module that points at the installed package directory, so
    Python finds the submodules there and never executes the package's own `__init__`.
    (`nextmm.parts.preprocess` reimplements data.py's preprocessing instead.)
    """
    if "imagebind" not in sys.modules:
        spec = importlib.util.find_spec("imagebind")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("ImageBind's model code is missing: pip install imagebind-unofficial")
        package = types.ModuleType("imagebind")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["imagebind"] = package
    return importlib.import_module("imagebind.models.imagebind_model")


class ImageBindEncoder(nn.Module):
    """Frozen ImageBind: one (B, embed_dim) vector per image, audio clip or video.

    Outputs are ImageBind's post-processed embeddings, which NExT-GPT consumes as they are: vision is
    L2-normalised; audio is L2-normalised then scaled by ImageBind's fixed logit scale 20; text by its
    learned logit scale. Multi-clip inputs are averaged after that, so their norms are a bit smaller.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.embed_dim: int = model.modality_heads["vision"][-1].out_features
        self.requires_grad_(False)
        self.train(False)

    @classmethod
    def from_config(cls, cfg: Mapping, *, empty: bool = False) -> "ImageBindEncoder":
        """Build from an encoder config: `imagebind` (ImageBindModel kwargs), `checkpoint`, `seed`.

        empty=True builds on the meta device (no memory, no init): only for counting parameters.
        With a checkpoint the model is also built empty and the checkpoint's tensors are assigned.
        """
        kwargs = _model_kwargs(cfg["imagebind"])
        checkpoint = cfg.get("checkpoint")
        imagebind_model = load_imagebind_model_module()

        if empty or checkpoint is not None:
            # ImageBind calls .item() on fresh tensors in its constructor, so a plain
            # `with torch.device("meta")` fails; accelerate puts only parameters on meta.
            from accelerate import init_empty_weights

            with init_empty_weights(include_buffers=False):
                model = imagebind_model.ImageBindModel(**kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(cfg.get("seed", 0)))
                model = imagebind_model.ImageBindModel(**kwargs)

        if checkpoint is not None and not empty:
            load_checkpoint(model, os.fspath(resolve_path(checkpoint)))
        return cls(model)

    def train(self, mode: bool = True) -> "ImageBindEncoder":
        """Stays in eval mode whatever is asked: the encoder is frozen (no drop path, no dropout)."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def forward(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Embed a batch of one modality: inputs laid out as in INPUT_LAYOUT -> (B, embed_dim)."""
        check_modality(modality)
        if inputs.ndim != INPUT_NDIM[modality]:
            raise ValueError(
                f"{modality} input must be {INPUT_LAYOUT[modality]}, got shape {tuple(inputs.shape)}"
            )
        key = IMAGEBIND_MODALITY[modality]
        inputs = inputs.to(device=self.device, dtype=self.dtype)
        return self.model({key: inputs})[key]  # (B, embed_dim)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Embed CLIP token ids (B, 77) with ImageBind's own text tower -> (B, embed_dim)."""
        if tokens.ndim != 2:
            raise ValueError(f"text input must be (B, 77) token ids, got shape {tuple(tokens.shape)}")
        return self.model({"text": tokens.to(self.device, torch.long)})["text"]

    def encode_captions(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts with ImageBind's own text tower -> (B, embed_dim)."""
        return self.encode_text(text_token_ids(texts))


def text_token_ids(texts: Sequence[str]) -> torch.Tensor:
    """Texts -> (B, 77) CLIP ids as ImageBind's own tokenizer gives them: <start> text <end>, zero-padded.

    ImageBind finds the end token by argmax, so it stays the last real token when a long text is cut.
    """
    tokenizer = _clip_tokenizer()
    out = torch.zeros(len(texts), TEXT_LENGTH, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        if len(ids) > TEXT_LENGTH:
            ids = ids[: TEXT_LENGTH - 1] + ids[-1:]
        out[row, : len(ids)] = torch.tensor(ids)
    return out


@functools.cache
def _clip_tokenizer():
    from nextmm.parts.tokenizers import (
        clip_tokenizer,  # transformers, imported only when text is embedded
    )

    return clip_tokenizer()


def _model_kwargs(imagebind_cfg: Any) -> dict[str, Any]:
    """ImageBindModel kwargs from a DictConfig or dict; YAML lists become tuples (kernel_size)."""
    if hasattr(imagebind_cfg, "_metadata"):  # an omegaconf container; imported lazily
        from omegaconf import OmegaConf

        imagebind_cfg = OmegaConf.to_container(imagebind_cfg, resolve=True)
    return {k: tuple(v) if isinstance(v, list) else v for k, v in dict(imagebind_cfg).items()}


def load_checkpoint(model: nn.Module, path: str) -> None:
    """Load an imagebind_huge.pth-style state dict into `model` (built empty or not), strictly.

    Raises ConfigError when the file is missing or unreadable, or its tensors do not fit the model.
    """
    if not os.path.isfile(path):
        raise ConfigError(
            f"ImageBind checkpoint not found: {path} (expected the imagebind_huge.pth state dict "
            "from https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth there; "
            "or set encoder.checkpoint)"
        )
    state_dict = read_plain_tensors(path)
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f"ImageBind checkpoint {path} holds a {type(state_dict).__name__}, not a state dict")

    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise ConfigError(f"ImageBind checkpoint {path} does not fit the encoder config: {problems}")
    # assign=True: the checkpoint's tensors become the parameters, so a model built on the meta
    # device needs no init and no second copy of the weights. They take the model's dtypes first: a
    # checkpoint stored in float16 (the shipped toyworld's) loads into a float32 model as float32.
    expected = model.state_dict()
    state_dict = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    model.load_state_dict(state_dict, strict=True, assign=True)
    logger.info("loaded ImageBind checkpoint %s (%d tensors)", path, len(state_dict))


def state_dict_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, Any], shown: int = 3) -> str:
    """One line naming wrong-shape, missing and unexpected tensors (first `shown` of each); '' if none."""
    wrong = [
        f"{k} {_shape(found[k])} in file vs {_shape(v)} in model"
        for k, v in expected.items()
        if k in found and _shape(found[k]) != _shape(v)
    ]
    missing = [f"{k} {_shape(v)}" for k, v in expected.items() if k not in found]
    unexpected = [f"{k} {_shape(v)}" for k, v in found.items() if k not in expected]
    parts = []
    for label, items in (("wrong shape", wrong), ("missing", missing), ("unexpected", unexpected)):
        if items:
            more = f" and {len(items) - shown} more" if len(items) > shown else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:shown])}{more}")
    return "; ".join(parts)


def _shape(tensor: Any) -> tuple[int, ...] | str:
    return tuple(tensor.shape) if hasattr(tensor, "shape") else type(tensor).__name__


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (works on meta-device modules)."""
    return sum(p.numel() for p in module.parameters())
