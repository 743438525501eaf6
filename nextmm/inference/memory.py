"""Fitting a turn into GPU memory: the memory settings, what each costs, and the planner behind ``memory=auto``.

A setting is where the parts live while a turn runs, and how the LLM's weights are stored:

    resident     every part on the GPU: the fastest
    offload      ImageBind and each decoder's models wait in CPU memory and visit the GPU while they run
                 (accelerate hooks; diffusers' model CPU offload). Each decoder's VAE decodes one image or
                 frame at a time (slicing), and in tiles where the picture is larger than the VAE's tile.
    sequential   as offload, but a decoder's models visit the GPU one layer at a time (diffusers' sequential CPU
                 offload): the least memory, the slowest
    + int8, nf4  the LLM's linear layers quantized by bitsandbytes (``model.llm.quantize``)

``memory=auto`` takes the first setting of ``LADDER`` whose estimated peak fits the GPU's free memory (or
``memory_limit``); without quantization at hand, of resident, offload and sequential. The estimate (``estimate_peak``) adds up the weights that sit on the GPU at each moment of a
text -> text + image + audio + video turn and the largest working tensors of that moment; it is a model of
memory, not a measurement, and ``benchmarks/gpu_full_size.py`` prints both side by side.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, open_dict

from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES
from nextmm.parts.decoders import PLACEMENTS, build_pipeline, pixel_factor

log = logging.getLogger(__name__)

GiB = 2**30
# Bytes per weight of the LLM's quantized linear layers: int8 with one float scale per row; nf4 with a block of 64
# sharing an 8-bit absmax, itself quantized in blocks of 256 with a float32 scale (double quantization).
QUANTIZED_BYTES = {"int8": 1.0, "nf4": 0.5 + 1 / 64 + 4 / (64 * 256)}
# Memory the planner leaves free beside the estimate: allocator caching and fragmentation, cuBLAS workspaces.
HEADROOM_FRACTION = 0.10
# Live tensors at the widest layer, in units of one activation there (fitted to the H100 run in docs/benchmarks.md:
# Stable Diffusion at 512^2 and Zeroscope's 8 frames at 320 x 576 decode within 10 % of this).
VAE_LIVE_TENSORS = 8
UNET_LIVE_TENSORS = 16


@dataclass(frozen=True)
class MemoryPlan:
    """Where the parts live during a turn (``placement``) and how the LLM's linear layers are stored."""

    placement: str = "resident"
    quantize: str | None = None

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"memory={self.placement}: give auto, {', '.join(PLACEMENTS)}")
        if self.quantize is not None and self.quantize not in QUANTIZED_BYTES:
            raise ConfigError(f"model.llm.quantize={self.quantize}: give null, {' or '.join(QUANTIZED_BYTES)}")

    @property
    def name(self) -> str:
        return self.placement if self.quantize is None else f"{self.placement}+{self.quantize}"

    @property
    def offloaded(self) -> bool:
        """ImageBind and the decoders wait in CPU memory between uses."""
        return self.placement != "resident"

    @property
    def vae_slicing(self) -> bool:
        return self.placement != "resident"

    @property
    def vae_tiling(self) -> bool:
        return self.placement != "resident"


# memory=auto tries these in order: first what costs no speed or precision, last what saves the most memory.
LADDER = (
    MemoryPlan("resident"),
    MemoryPlan("offload"),
    MemoryPlan("offload", "int8"),
    MemoryPlan("offload", "nf4"),
    MemoryPlan("sequential", "nf4"),
)


def parse_bytes(value) -> int:
    """``memory_limit``: a number of GiB (12, 11.5) or a size with its unit ("12GiB", "800 MiB", "16GB")."""
    units = {"B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": GiB, "TIB": 2**40, "KB": 10**3, "MB": 10**6, "GB": 10**9,
             "TB": 10**12}
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value * GiB)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    unit = match.group(2).upper() if match else None
    if match is None or (unit or "GIB") not in units or float(match.group(1)) <= 0:
        raise ConfigError(f"memory_limit={value}: give a size such as 12 (GiB), 12GiB or 800MiB")
    return int(float(match.group(1)) * units[unit or "GIB"])


def check_memory(memory, memory_limit=None) -> None:
    """A command's ``memory`` and ``memory_limit`` settings, checked before any work."""
    if memory != "auto" and memory not in PLACEMENTS:
        raise ConfigError(f"memory={memory}: give auto, {', '.join(PLACEMENTS)}")
    if memory_limit is not None:
        parse_bytes(memory_limit)
        if memory != "auto":
            raise ConfigError(f"memory_limit={memory_limit} is the budget of memory=auto: drop it, or set memory=auto")


# ------------------------------------------------------------------------------------------------ what each costs
@dataclass(frozen=True)
class PartSizes:
    """Parameter counts of one model, read from its architecture on the meta device (nothing allocated)."""

    llm_linear: int  # the LLM's quantizable linear layers (attention and MLP of every block)
    llm_other: int  # embeddings, output layer, norms, LoRA
    projectors: int  # input and output projectors
    encoder: int
    decoders: Mapping[str, Mapping[str, int]]  # modality -> component -> parameters
    largest_leaf: Mapping[str, int]  # modality -> the largest single layer (what sequential offload holds)
    kv_per_token: int  # key and value elements one token adds to the cache, all layers
    vocab: int
    context: int


def part_sizes(cfg: DictConfig, model=None) -> PartSizes:
    """Count every part of the model config ``cfg`` on the meta device (seconds even at 7B), or of ``model``, that
    config's model built already."""
    from nextmm.model import NextMM  # the model imports this module

    model = model if model is not None else NextMM.from_config(cfg, empty=True)
    linear = sum(module.weight.numel() for name, module in model.llm.named_modules()
                 if isinstance(module, torch.nn.Linear) and "lora_" not in name and "lm_head" not in name)
    decoders, leaves = {}, {}
    for modality in MODALITIES:
        pipe = build_pipeline(modality, cfg.decoders[modality], empty=True)
        modules = {name: part for name, part in pipe.components.items() if isinstance(part, torch.nn.Module)}
        decoders[modality] = {name: sum(p.numel() for p in part.parameters()) for name, part in modules.items()}
        leaves[modality] = max(sum(p.numel() for p in leaf.parameters(recurse=False))
                               for part in modules.values() for leaf in part.modules())
    llm_cfg = model.llm.config
    heads = llm_cfg.num_attention_heads
    kv_heads = getattr(llm_cfg, "num_key_value_heads", None) or heads
    return PartSizes(
        llm_linear=linear,
        llm_other=sum(p.numel() for p in model.llm.parameters()) - linear,
        projectors=sum(p.numel() for part in (model.input_projector, model.output_projectors) for p in part.parameters()),
        encoder=sum(p.numel() for p in model.encoder.parameters()),
        decoders=decoders,
        largest_leaf=leaves,
        kv_per_token=2 * llm_cfg.num_hidden_layers * kv_heads * (llm_cfg.hidden_size // heads),
        vocab=llm_cfg.vocab_size,
        context=llm_cfg.max_position_embeddings,
    )


def estimate_peak(sizes: PartSizes, plan: MemoryPlan, decoders_cfg: Mapping, *, element_bytes: int = 2,
                  batch: int = 1) -> dict[str, int]:
    """Estimated peak GPU bytes of each moment of a turn (encode, think, decode_<modality>) and of the whole turn
    ("turn"), for ``batch`` conversations at the decoders' configured sizes, weights in ``element_bytes``."""
    llm_linear = sizes.llm_linear * (QUANTIZED_BYTES[plan.quantize] if plan.quantize else element_bytes)
    on_gpu = llm_linear + (sizes.llm_other + sizes.projectors) * element_bytes
    if not plan.offloaded:
        on_gpu += (sizes.encoder + sum(sum(parts.values()) for parts in sizes.decoders.values())) * element_bytes
    moments = {
        "encode": sizes.encoder * element_bytes if plan.offloaded else 0,
        # the whole context's keys and values, and float32 logits of the vocabulary, twice (processors copy them)
        "think": batch * (sizes.kv_per_token * sizes.context * element_bytes + 2 * sizes.vocab * 4),
    }
    for modality in MODALITIES:
        cfg = decoders_cfg[modality]
        factor = pixel_factor(cfg)
        height, width, items = _render_size(modality, cfg, factor)
        unet = cfg["components"]["unet"]["config"]
        vae = cfg["components"]["vae"]["config"]
        latent_cells = (height // factor) * (width // factor)
        working = 2 * batch * items * unet["block_out_channels"][0] * latent_cells * UNET_LIVE_TENSORS
        decoded = 1 if plan.vae_slicing else batch * items
        if plan.vae_tiling:  # tiles of the VAE's sample size, decoded one after another
            tile = int(vae.get("sample_size") or max(height, width))
            height, width = min(height, tile), min(width, tile)
        working += decoded * vae["block_out_channels"][0] * height * width * VAE_LIVE_TENSORS
        visiting = {"resident": 0, "offload": max(sizes.decoders[modality].values()),
                    "sequential": sizes.largest_leaf[modality]}[plan.placement]
        moments[f"decode_{modality}"] = (visiting + working) * element_bytes
    peaks = {moment: on_gpu + extra for moment, extra in moments.items()}
    peaks["turn"] = max(peaks.values())
    return peaks


def _render_size(modality: str, cfg: Mapping, factor: int) -> tuple[int, int, int]:
    """(height, width, pictures per conditioning) a decoder renders at its configured defaults; for audio the
    log-mel spectrogram's frames and bins (10 ms hop)."""
    unet_size = int(cfg["components"]["unet"]["config"]["sample_size"])
    if modality == "audio":
        frames = round(float(cfg.get("audio_seconds") or unet_size * factor / 100) * 100)
        bins = int(cfg["components"]["vocoder"]["config"]["model_in_dim"]) if "vocoder" in cfg["components"] else 64
        return frames, bins, 1
    height = int(cfg.get("height") or unet_size * factor)
    width = int(cfg.get("width") or unet_size * factor)
    return height, width, int(cfg.get("num_frames") or 1) if modality == "video" else 1


# ------------------------------------------------------------------------------------------------ the planner
def ladder(quantize: str | None = None, can_quantize: bool = True) -> list[MemoryPlan]:
    """The plans memory=auto tries, in order: LADDER with the LLM as the user set it (``quantize``), or, when it
    is unset and cannot be quantized, LADDER without quantization (resident, offload, sequential)."""
    plans = [MemoryPlan(p.placement, quantize or (p.quantize if can_quantize else None)) for p in LADDER]
    return list(dict.fromkeys(plans))


def choose_plan(peaks_of: Mapping[MemoryPlan, int], budget: int) -> MemoryPlan:
    """The first plan of ``peaks_of`` (in its order: ``ladder()``'s) whose peak plus headroom fits ``budget``
    bytes."""
    for plan, peak in peaks_of.items():
        if peak * (1 + HEADROOM_FRACTION) <= budget:
            return plan
    lightest = min(peaks_of, key=peaks_of.__getitem__)
    raise ConfigError(
        f"memory=auto: a turn needs about {_gib(peaks_of[lightest] * (1 + HEADROOM_FRACTION))} even with "
        f"memory={lightest.name} and {_gib(budget)} is available: free GPU memory, lower the decoders' sizes "
        "(num_frames=, height=, width=), or use device=cpu"
    )


def plan_memory(memory: str, model_cfg: DictConfig, device: torch.device, dtype: torch.dtype, *,
                memory_limit=None, batch: int = 1, sizes: Mapping | None = None) -> MemoryPlan:
    """The plan for ``memory`` (auto or a placement). An explicit ``model.llm.quantize`` is kept as given; auto
    chooses the quantization only when it is null, the LLM is loaded from a folder (bitsandbytes quantizes
    pretrained weights) and not merged with its LoRA (``llm.merge_for_inference``). Auto plans for ``batch``
    conversations at a turn's ``sizes`` (height, width, num_frames, audio_seconds; None keeps a decoder's own)."""
    check_memory(memory, memory_limit)
    quantize = model_cfg.llm.get("quantize")
    if memory != "auto":
        return MemoryPlan(memory, quantize)
    if device.type != "cuda":
        if memory_limit is not None:
            raise ConfigError(f"memory_limit={memory_limit} budgets GPU memory: drop it on device={device}")
        log.info("memory=auto on %s: every part stays in memory (resident)", device)
        return MemoryPlan("resident", quantize)
    budget = parse_bytes(memory_limit) if memory_limit is not None else free_gpu_memory(device)
    counts = part_sizes(model_cfg)
    decoders = rendered_at(model_cfg.decoders, sizes or {})
    element_bytes = torch.tensor([], dtype=dtype).element_size()
    can_quantize = (model_cfg.llm.get("path") is not None and importlib.util.find_spec("bitsandbytes") is not None
                    and not model_cfg.llm.get("merge_for_inference"))  # LoRA does not merge into quantized weights
    peaks = {plan: estimate_peak(counts, plan, decoders, element_bytes=element_bytes, batch=batch)["turn"]
             for plan in ladder(quantize, can_quantize)}
    plan = choose_plan(peaks, budget)
    log.info("memory=auto: %s (estimated peak %s of %s)", plan.name, _gib(peaks[plan]), _gib(budget))
    return plan


def rendered_at(decoders_cfg: Mapping, sizes: Mapping) -> Mapping:
    """The decoders' configs with a turn's sizes in place of their defaults (the keys each decoder reads)."""
    keys = {"image": ("height", "width"), "audio": ("audio_seconds",), "video": ("height", "width", "num_frames")}
    changed = {m: {key: sizes[key] for key in keys[m] if sizes.get(key) is not None} for m in MODALITIES}
    if not any(changed.values()):
        return decoders_cfg
    decoders = copy.deepcopy(decoders_cfg)
    for modality, values in changed.items():
        with open_dict(decoders[modality]):
            decoders[modality].update(values)
    return decoders


def free_gpu_memory(device: torch.device) -> int:
    """Bytes the planner may use on ``device``: what CUDA reports free (memory torch holds counts as used)."""
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def _gib(size: float) -> str:
    return f"{size / GiB:.1f} GiB"
