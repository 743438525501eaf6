"""The three frozen diffusion decoders of NExT-GPT, used unmodified through diffusers.

- image: Stable Diffusion 1.5 (`StableDiffusionPipeline`), conditioned on `prompt_embeds` (B, 77, 768),
- audio: AudioLDM-l-full (`AudioLDMPipeline`), conditioned on the CLAP text embedding (B, 512), L2-normalised,
  which its UNet takes as class labels,
- video: Zeroscope v2 576w (`TextToVideoSDPipeline`), conditioned on `prompt_embeds` (B, 77, 1024).

The LLM side's output projectors produce these conditionings; `Decoders.render` hands them to the pipelines as
precomputed embeddings, and `Decoders.encode_text` gives what each decoder's own text encoder makes of a caption
(the alignment target in training). Shapes above are the real ones; every shape is read from the config
(`conditioning_shape`), so tiny test decoders use their own.

A decoder config (one per modality, a Hydra group `nextmm/conf/decoders/`):

    image:
      path: checkpoints/stable-diffusion-v1-5   # a diffusers pipeline folder, loaded with from_pretrained; or null
      components:                               # the architecture: built randomly when path is null, and built
        unet: {class: UNet2DConditionModel, seed: 0, config: {...}}   # empty (meta device) for counting
        tokenizer: {class: CLIPTokenizer, offline: clip_bpe, model_max_length: 77}
        scheduler: {class: PNDMScheduler, config: {...}}
        ...
      conditioning_shape: [77, 768]
      num_inference_steps: 50   # optional defaults, read by the caller (nextmm.inference.conversation)
      height: 512        # optional render defaults: height, width (image, video), num_frames, fps (video),
      width: 512         # audio_seconds (audio); the pipeline's own defaults otherwise
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
import transformers
from accelerate import init_empty_weights
from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin
from omegaconf import DictConfig, ListConfig, OmegaConf

from nextmm.config import resolve_path
from nextmm.errors import ConfigError, Stopped
from nextmm.modality import MODALITIES, check_modality
from nextmm.parts.tokenizers import build_tokenizer
from nextmm.parts.vocoder import GriffinLimVocoder  # imported, a folder's model_index.json may name it (diffusers)

logger = logging.getLogger(__name__)

PIPELINES = {"image": "StableDiffusionPipeline", "audio": "AudioLDMPipeline", "video": "TextToVideoSDPipeline"}

# Stable Diffusion's safety checker is a separate CLIP vision model, not part of the decoder; a pipeline built
# from components runs without one (a real folder brings its own and from_pretrained loads it).
PIPELINE_EXTRA_ARGS = {
    "image": {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False},
}
# Components of nextmm's own that a decoder config may name beside diffusers' and transformers' classes.
OWN_COMPONENTS = {"GriffinLimVocoder": GriffinLimVocoder}
PLACEMENTS = ("resident", "offload", "sequential")
AUDIOLDM_SAMPLE_RATE = 16000
DEFAULT_FPS = 8


def pixel_factor(decoder_cfg) -> int:
    """How many pixels one latent cell spans (a height or width must be a multiple): 2 ** (VAE levels - 1) for a
    decoder built from components, 8 for the real pipelines (Stable Diffusion, Zeroscope)."""
    components = decoder_cfg.get("components") or {}
    vae = (components.get("vae") or {}).get("config") or {}
    levels = len(vae.get("block_out_channels") or [None] * 4)
    return 2 ** (levels - 1)


def pipeline_class(modality: str) -> type[DiffusionPipeline]:
    check_modality(modality)
    return getattr(diffusers, PIPELINES[modality])


def plain(cfg: Any) -> Any:
    """A plain dict/list copy of an omegaconf node (diffusers and transformers configs want plain values)."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def build_component(name: str, spec: Mapping, *, empty: bool = False) -> Any:
    """One pipeline component from `{class, seed, config}` (models), `{class, config}` (schedulers and other parts
    without weights, such as GriffinLimVocoder) or `{class, offline, model_max_length}` (tokenizers). Models are
    randomly initialised from `seed` without touching the global RNG, or with `empty` put on the meta device (no
    memory, no init)."""
    class_name = spec["class"]
    if "offline" in spec:
        return build_tokenizer(spec)
    cls = (getattr(diffusers, class_name, None) or getattr(transformers, class_name, None)
           or OWN_COMPONENTS.get(class_name))
    if cls is None:
        raise ConfigError(f"decoder component {name}: unknown class {class_name!r} (not in diffusers, transformers "
                          f"or nextmm's {', '.join(OWN_COMPONENTS)})")
    config = plain(spec["config"])
    if issubclass(cls, (SchedulerMixin, GriffinLimVocoder)):
        return cls.from_config(config)
    if not issubclass(cls, (ModelMixin, transformers.PreTrainedModel)):
        raise ConfigError(f"decoder component {name}: {class_name} is neither a model, a scheduler nor a tokenizer")
    if empty:
        with init_empty_weights():
            return init_model(cls, config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec["seed"]))
        return init_model(cls, config)


def init_model(cls: type, config: dict) -> torch.nn.Module:
    """A randomly initialised diffusers or transformers model, in eval mode (frozen: no dropout) as
    from_pretrained leaves it."""
    if issubclass(cls, ModelMixin):
        return cls.from_config(config).eval()
    return cls(cls.config_class(**config)).eval()


def build_pipeline(
    modality: str, cfg: Mapping, *, empty: bool = False, dtype: torch.dtype = torch.float32
) -> DiffusionPipeline:
    """The decoder pipeline of one modality, on CPU in `dtype`.

    `path` set: `<Pipeline>.from_pretrained(path)`, the way real weights load. `path` null: built from
    `components`, randomly initialised. `empty=True`: built from `components` with every model on the meta device,
    so full-size pipelines can be counted in seconds with nothing downloaded or allocated (all three pipeline
    classes accept meta modules in their constructors).
    """
    cls = pipeline_class(modality)
    path = resolve_path(cfg.get("path"))
    if path is not None and not empty:
        check_pipeline_folder(path)
        logger.info("loading %s decoder %s from %s", modality, cls.__name__, path)
        with _own_components_accepted():
            return cls.from_pretrained(str(path), dtype=dtype)
    if cfg.get("components") is None:
        raise ConfigError(f"{modality} decoder: set `path` to a diffusers pipeline folder or give `components`")
    components = {name: build_component(name, spec, empty=empty) for name, spec in cfg["components"].items()}
    pipe = cls(**components, **PIPELINE_EXTRA_ARGS.get(modality, {}))
    if dtype != torch.float32 and not empty:
        pipe = pipe.to(dtype=dtype)
    return pipe


class _OwnComponentFilter(logging.Filter):
    """Drops diffusers' "Expected types for vocoder: SpeechT5HifiGan, got GriffinLimVocoder" (the pipeline's type
    hint, not a fault: the pipeline reads only the config keys both share)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Expected types for") and any(name in message for name in OWN_COMPONENTS))


@contextlib.contextmanager
def _own_components_accepted():
    pipeline_logger, own = logging.getLogger("diffusers.pipelines.pipeline_utils"), _OwnComponentFilter()
    pipeline_logger.addFilter(own)
    try:
        yield
    finally:
        pipeline_logger.removeFilter(own)


def check_pipeline_folder(path: str | Path) -> None:
    if not (Path(path) / "model_index.json").is_file():
        what = "does not exist" if not Path(path).exists() else "has no model_index.json"
        raise ConfigError(
            f"decoder path {path} {what}: expected a diffusers pipeline folder (model_index.json and one subfolder "
            "per component, as save_pretrained writes)"
        )


def count_parameters(components: Mapping[str, Any]) -> dict[str, int]:
    """Parameters of each nn.Module component (e.g. `pipeline.components`); meta tensors count too."""
    return {
        name: sum(p.numel() for p in module.parameters())
        for name, module in components.items()
        if isinstance(module, torch.nn.Module)
    }


class Decoders:
    """Lazily loaded decoders keyed by modality; a pipeline is built/loaded once, on first use.

    cfg: {modality: decoder config} for any subset of MODALITIES (see the module docstring).
    placement: where a pipeline's models wait on CUDA (nextmm.inference.memory): resident (on the GPU), offload
        (in CPU memory, each model moved to the GPU while it runs) or sequential (moved one layer at a time).
        On other devices every pipeline is resident.
    vae_slicing: the VAE decodes one image (or video frame) at a time; vae_tiling: and in overlapping tiles where
        the picture is larger than its tile (diffusers' AutoencoderKL slicing and tiling, on every device).
    """

    def __init__(
        self,
        cfg: Mapping[str, Mapping],
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        placement: str = "resident",
        vae_slicing: bool = False,
        vae_tiling: bool = False,
    ) -> None:
        unknown = set(cfg) - set(MODALITIES)
        if unknown:
            raise ConfigError(f"decoders config: unknown modalities {sorted(unknown)}; use {', '.join(MODALITIES)}")
        if placement not in PLACEMENTS:
            raise ConfigError(f"decoders placement {placement!r}: give {', '.join(PLACEMENTS)}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = dtype
        self.placement = placement
        self.vae_slicing = vae_slicing
        self.vae_tiling = vae_tiling
        self._pipelines: dict[str, DiffusionPipeline] = {}
        self._empty_negatives: dict[str, torch.Tensor] = {}

    def _cfg(self, modality: str) -> Mapping:
        check_modality(modality)
        if modality not in self.cfg:
            raise ConfigError(f"no {modality} decoder configured (have: {', '.join(self.cfg) or 'none'})")
        return self.cfg[modality]

    def pipeline(self, modality: str) -> DiffusionPipeline:
        """The modality's pipeline, built or loaded on first call."""
        if modality not in self._pipelines:
            self._pipelines[modality] = self._placed(build_pipeline(modality, self._cfg(modality), dtype=self.dtype))
        return self._pipelines[modality]

    def use(self, modality: str, pipeline: DiffusionPipeline) -> None:
        """Use ``pipeline`` (built elsewhere, e.g. with random weights for a benchmark) for ``modality``, placed
        as this object's own pipelines are."""
        self._cfg(modality)
        self._pipelines[modality] = self._placed(pipeline)
        self._empty_negatives.pop(modality, None)

    def _placed(self, pipe: DiffusionPipeline) -> DiffusionPipeline:
        """``pipe`` on the device, or offloaded to CPU memory with hooks that bring it over (CUDA), its VAE
        slicing and tiling as configured."""
        if self.device.type == "cuda" and self.placement == "offload":
            pipe.enable_model_cpu_offload(device=self.device)
        elif self.device.type == "cuda" and self.placement == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe = pipe.to(self.device)
        if self.vae_slicing:
            pipe.vae.enable_slicing()
        if self.vae_tiling:
            pipe.vae.enable_tiling()
        return pipe

    def loaded(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self._pipelines)

    def conditioning_shape(self, modality: str) -> tuple[int, ...]:
        """Shape of one conditioning, without batch: (77, 768) image, (512,) audio, (77, 1024) video at full size."""
        return tuple(int(n) for n in self._cfg(modality)["conditioning_shape"])

    @property
    def sample_rate(self) -> int:
        """Audio output rate in Hz: the vocoder's once the audio decoder is loaded (AudioLDM's is 16 kHz)."""
        if "audio" in self._pipelines:
            return int(self._pipelines["audio"].vocoder.config.sampling_rate)
        return AUDIOLDM_SAMPLE_RATE

    @property
    def fps(self) -> int:
        """Frame rate for writing rendered videos (config `video.fps`)."""
        return int(self.cfg.get("video", {}).get("fps", DEFAULT_FPS))

    @torch.no_grad()
    def encode_text(self, modality: str, captions: list[str]) -> torch.Tensor:
        """What the decoder's own text encoder makes of `captions`: exactly the conditioning the pipeline computes
        from `prompt=`. image/video: (B, 77, D) last hidden state; audio: (B, 512) CLAP text_embeds, L2-normalised."""
        pipe = self.pipeline(modality)
        device = pipe._execution_device
        if modality == "audio":
            return pipe._encode_prompt(list(captions), device, 1, False)
        prompt_embeds, _ = pipe.encode_prompt(list(captions), device, 1, False)
        return prompt_embeds

    def _check_conditioning(self, modality: str, conditioning: torch.Tensor, what: str) -> None:
        shape = self.conditioning_shape(modality)
        if tuple(conditioning.shape[1:]) != shape:
            raise ValueError(
                f"{modality} {what} has shape {tuple(conditioning.shape)}; expected (B, {', '.join(map(str, shape))})"
            )

    def _empty_negative(self, modality: str) -> torch.Tensor:
        """The encoding of "" (1, *conditioning_shape), the pipelines' own negative prompt, computed once."""
        if modality not in self._empty_negatives:
            self._empty_negatives[modality] = self.encode_text(modality, [""])
        return self._empty_negatives[modality]

    @torch.no_grad()
    def render(
        self,
        modality: str,
        conditioning: torch.Tensor,
        *,
        negative: torch.Tensor | None = None,
        num_inference_steps: int,
        guidance_scale: float,
        generator: torch.Generator | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        audio_seconds: float | None = None,
        progress: bool = True,
        stop: threading.Event | None = None,
    ) -> list:
        """Decode a batch of conditionings (B, *conditioning_shape) into media.

        Returns image: list of PIL images; audio: list of float32 waveforms (samples,) at `sample_rate`;
        video: list of uint8 arrays (F, H, W, 3). Sizes left None come from the config, else the pipeline.
        With guidance_scale > 1 the negative conditioning is `negative` ((B or 1, *conditioning_shape)) or the
        encoding of "" (passing it ourselves also keeps AudioLDM from padding "" to its embedding width);
        with guidance_scale <= 1 none is used. Once ``stop`` is set, the next denoising step raises Stopped.
        """
        self._check_conditioning(modality, conditioning, "conditioning")
        cfg = self._cfg(modality)
        pipe = self.pipeline(modality)
        pipe.set_progress_bar_config(disable=not progress)
        device, dtype = pipe._execution_device, pipe.text_encoder.dtype

        # 1. conditioning, and the negative one for classifier-free guidance
        kwargs: dict[str, Any] = {
            "prompt_embeds": conditioning.to(device=device, dtype=dtype),
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "generator": generator,
        }
        if guidance_scale > 1:
            if negative is None:
                negative = self._empty_negative(modality)
            self._check_conditioning(modality, negative, "negative conditioning")
            if negative.shape[0] == 1:
                negative = negative.expand_as(conditioning)
            if negative.shape != conditioning.shape:
                raise ValueError(
                    f"{modality} negative conditioning has shape {tuple(negative.shape)}; expected "
                    f"{tuple(conditioning.shape)} like the conditioning, or a batch of 1"
                )
            kwargs["negative_prompt_embeds"] = negative.to(device=device, dtype=dtype)

        # 2. sizes: argument, else config default, else left to the pipeline
        sizes = {"image": {"height": height, "width": width}, "audio": {"audio_seconds": audio_seconds},
                 "video": {"height": height, "width": width, "num_frames": num_frames}}[modality]
        sizes = {key: value if value is not None else cfg.get(key) for key, value in sizes.items()}
        sizes = {key: value for key, value in sizes.items() if value is not None}

        # 3. run the pipeline unmodified and convert its output
        if stop is not None:
            kwargs.update(_stop_callback(pipe, stop))
        if modality == "image":
            return list(pipe(**kwargs, **sizes, output_type="pil").images)
        if modality == "audio":
            if "audio_seconds" in sizes:
                kwargs["audio_length_in_s"] = sizes.pop("audio_seconds")
            out = pipe(**kwargs, output_type="np")
            return [np.asarray(waveform, dtype=np.float32) for waveform in out.audios]
        frames = np.asarray(pipe(**kwargs, **sizes, output_type="np").frames)  # (B, F, H, W, 3) in [0, 1]
        return list((frames * 255).round().clip(0, 255).astype(np.uint8))

    def num_parameters(self, modality: str) -> int:
        """Parameters of the modality's pipeline (all nn.Module components). Not loaded: counted on an empty
        build of `components` (no memory, seconds even at full size); a `path` without `components` is loaded."""
        return sum(self.component_parameters(modality).values())

    def component_parameters(self, modality: str) -> dict[str, int]:
        """Parameters per nn.Module component, e.g. {"unet": ..., "vae": ..., "text_encoder": ...}."""
        cfg = self._cfg(modality)
        if modality in self._pipelines or cfg.get("components") is None:
            return count_parameters(self.pipeline(modality).components)
        return count_parameters(build_pipeline(modality, cfg, empty=True).components)


def _stop_callback(pipe, stop: threading.Event) -> dict:
    """The pipeline's per-step callback (diffusers pipelines name it one of two ways) raising once ``stop`` is set."""
    def check(step: int) -> None:
        if stop.is_set():
            raise Stopped(f"the render was stopped at step {step}")

    def on_step_end(_pipe, step: int, _timestep, tensors: dict) -> dict:
        check(step)
        return tensors

    if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
        return {"callback_on_step_end": on_step_end}
    return {"callback": lambda step, _timestep, _latents: check(step), "callback_steps": 1}
