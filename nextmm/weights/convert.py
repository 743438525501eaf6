"""``python -m nextmm convert source=checkpoints/nextgpt_7b_tiva_v0 output=checkpoints/nextgpt_7b [model=nextgpt_7b]``

Converts the official NExT-GPT release (7b_tiva_v0) into a nextmm trained-parts folder. The source folder holds
``pytorch_model.pt`` (a plain dict of tensors, read with ``torch.load(weights_only=True)``: nothing unpickles code)
and the tokenizer files that added ``<Img>``, ``</Img>``, [IMG0..3], [VID0..23], [AUD0..7]. The output holds
projectors.safetensors, adapter/ (peft: LoRA and the new tokens' rows), embeddings.safetensors (the full
embedding and LM-head matrices, trained in full by the original), tokenizer/ and config.yaml.

Key mapping (official -> nextmm; docs/real_weights.md has the table with the 7B shapes):
    llama_proj.{weight,bias}                          -> input_projector.proj.{weight,bias}
    gen_text_hidden_fcs{,_video,_audio}.0.fc.*        -> output_projectors.{image,video,audio}.fc.*
        ... .tfm.*  -> .transformer.*     ... .model.*  -> .out.*     ... .query_embs -> .queries
    llama_model.<lora key>.lora_{A,B}[.default].weight  -> adapter <lora key>.lora_{A,B}.weight
    llama_model[.base_model.model].model.embed_tokens.weight -> embeddings embed_tokens.weight, and its rows of
        nextmm's added tokens -> adapter ...embed_tokens.token_adapter.trainable_tokens_delta  (same for lm_head)

The model config (``model=``) gives the architecture, signal counts and LoRA settings; the expected names and
shapes come from building the LLM and projectors on the meta device, so nothing of size 7B is allocated. Every
expected tensor must be found with its shape, and every official tensor must be used.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import init_empty_weights
from omegaconf import DictConfig, OmegaConf
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from nextmm.atomic import staged_folder
from nextmm.config import load_model_config
from nextmm.errors import ConfigError
from nextmm.modality import MODALITIES
from nextmm.parts.llm import added_tokens, build_llm, missing_tokenizer_files
from nextmm.parts.projectors import InputProjector, build_output_projectors
from nextmm.weights.safe import read_plain_tensors
from nextmm.weights.trained import (
    ADAPTER_DIR,
    CONFIG_FILE,
    EMBEDDINGS_FILE,
    PROJECTORS_FILE,
    TOKENIZER_DIR,
    embedding_weights,
)

log = logging.getLogger(__name__)

OFFICIAL_FILE = "pytorch_model.pt"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
INPUT_PROJECTOR = "llama_proj."
OUTPUT_PROJECTORS = {"image": "gen_text_hidden_fcs.0.", "video": "gen_text_hidden_fcs_video.0.",
                     "audio": "gen_text_hidden_fcs_audio.0."}
# TextFcLayer (mode "transformer") -> nextmm OutputProjector; nn.Transformer's own names are the same in both.
PROJECTOR_NAMES = (("fc.", "fc."), ("tfm.", "transformer."), ("model.", "out."), ("query_embs", "queries"))
# The first name is what stage 3 saves (resized after peft wrapping); the second is the one the original's
# loader remaps from, so both are accepted.
EMBEDDING_KEYS = {
    "embed_tokens.weight": ("llama_model.base_model.model.model.embed_tokens.weight",
                            "llama_model.model.embed_tokens.weight"),
    "lm_head.weight": ("llama_model.base_model.model.lm_head.weight", "llama_model.lm_head.weight"),
}
RELEASE = ("the release (python -m nextmm download parts=[nextgpt], or every file of the Hub repo "
           "ChocoWu/nextgpt_7b_tiva_v0)")
RELEASE_DTYPE = torch.float16  # the original trained with DeepSpeed fp16 (code/dsconfig/stage_3.json)
# One line that re-saves a pytorch_model.pt whose Parameters carry objects besides tensors (DeepSpeed can leave its
# attributes on them) as plain tensors. It unpickles the file: only for a file you trust, where its packages import.
RESAVE = ("python -c \"import torch; p = 'pytorch_model.pt'; s = torch.load(p, map_location='cpu', "
          "weights_only=False); torch.save({k: v.detach().clone() for k, v in s.items()}, p)\"")
LORA_KEY = re.compile(r"^llama_model\.(?P<module>base_model\.model\..+)\.(?P<ab>lora_[AB])(?:\.default)?\.weight$")


@dataclass
class TrainedParts:
    """Converted tensors, keyed as the nextmm folder stores them."""

    projectors: dict[str, torch.Tensor]  # input_projector.*, output_projectors.<modality>.*
    adapter: dict[str, torch.Tensor]  # peft's saved-adapter keys: LoRA A/B and trainable_tokens_delta (N, H)
    embeddings: dict[str, torch.Tensor]  # embed_tokens.weight, lm_head.weight: (V, H)


@dataclass
class Expected:
    """What the model config expects: nextmm key -> meta tensor (for its shape), and the adapter's peft config."""

    projectors: dict[str, torch.Tensor]
    adapter: dict[str, torch.Tensor]
    embeddings: dict[str, torch.Tensor]
    peft_config: LoraConfig


# ---------------------------------------------------------------------------------------------- reading
def load_official(source: str | Path) -> dict[str, torch.Tensor]:
    """``source/pytorch_model.pt`` as a dict of tensors, through torch's weights-only unpickler."""
    path = official_file(source)
    advice = (f"if it holds objects besides tensors (DeepSpeed can leave attributes on saved Parameters), re-save it "
              f"as plain tensors in {path.parent}, trusting the file: {RESAVE} (docs/real_weights.md#converting-the-"
              "official-checkpoint)")
    state = read_plain_tensors(path, advice=advice)
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a dict of tensors")
    odd = sorted(str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if odd:
        raise ConfigError(f"{path} holds entries that are not tensors: {', '.join(odd[:5])}")
    not_float = sorted(k for k, v in state.items() if not v.is_floating_point())
    if not_float:
        raise ConfigError(f"{path} holds tensors that are not floating point: {', '.join(not_float[:5])} "
                          f"({state[not_float[0]].dtype}): not the NExT-GPT release, whose tensors are float16")
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in state.values()})
    if dtypes != [str(RELEASE_DTYPE).removeprefix("torch.")]:
        # accepted: the converted files keep these values, and loading casts them to the model's dtype
        log.warning("%s holds %s tensors where the release's are float16: kept as they are; loading casts them to "
                    "the model's dtype", path, " and ".join(dtypes))
    return dict(state)


def official_file(source: str | Path) -> Path:
    path = Path(source) / OFFICIAL_FILE
    if not path.is_file():
        raise ConfigError(f"official checkpoint not found: {path} (download it with python -m nextmm download "
                          "parts=[nextgpt], or give source=<folder with pytorch_model.pt and the tokenizer files>)")
    return path


def check_release_files(source: Path) -> None:
    """The tokenizer files the original's stage 3 saves beside pytorch_model.pt (transformers 4.29's slow
    LlamaTokenizer.save_pretrained): tokenizer.model, added_tokens.json, tokenizer_config.json,
    special_tokens_map.json; or a tokenizer.json and tokenizer_config.json where a newer transformers re-saved it."""
    missing = missing_tokenizer_files(source)
    if missing:
        raise ConfigError(f"{source} lacks {', '.join(missing)}: put every file of {RELEASE} into {source}")


def load_official_tokenizer(source: str | Path, signal_counts: Mapping[str, int]) -> PreTrainedTokenizerBase:
    """The release's tokenizer; it must already hold nextmm's tokens (their ids are the checkpoint's rows)."""
    check_release_files(Path(source))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except Exception as error:
        raise ConfigError(f"cannot load the official tokenizer in {source}: {_first_line(error)} (a tokenizer.model "
                          "file needs the sentencepiece package)") from None
    absent = [t for t in added_tokens(signal_counts) if t not in tokenizer.get_vocab()]
    if absent:
        raise ConfigError(f"the tokenizer in {source} lacks {', '.join(absent[:6])}"
                          f"{' and more' if len(absent) > 6 else ''}: not the NExT-GPT release's tokenizer")
    return tokenizer


# ------------------------------------------------------------------------------------------- expectations
def expected_tensors(cfg: Mapping, vocab_size: int, token_ids: Sequence[int]) -> Expected:
    """Names and shapes the model config expects, from its parts built on the meta device."""
    llm = build_llm(cfg["llm"], vocab_size, list(token_ids), empty=True)
    hidden = llm.config.hidden_size
    shapes = {m: tuple(cfg["decoders"][m]["conditioning_shape"]) for m in MODALITIES}
    with init_empty_weights():
        input_projector = InputProjector(cfg["encoder"]["imagebind"]["out_embed_dim"], hidden,
                                         cfg["input_projector"]["kind"])
        output_projectors = build_output_projectors(cfg["output_projector"], hidden, shapes)
    projectors = {f"input_projector.{k}": v for k, v in input_projector.state_dict().items()}
    projectors |= {f"output_projectors.{k}": v for k, v in output_projectors.state_dict().items()}
    return Expected(projectors, get_peft_model_state_dict(llm, save_embedding_layers=False), embedding_weights(llm), llm.peft_config["default"])


# ------------------------------------------------------------------------------------------- conversion
def convert_state(
    official: Mapping[str, torch.Tensor], expected: Expected, token_ids: Sequence[int], source: str = OFFICIAL_FILE
) -> TrainedParts:
    """Rename the official tensors to nextmm's keys and check them strictly against ``expected``.

    ``token_ids``: the ids of ``nextmm.parts.llm.added_tokens(counts)`` in the official tokenizer, the order of peft's
    ``trainable_token_indices``. Raises one ConfigError line naming every missing, unused or misshapen key.
    """
    parts = TrainedParts({}, {}, {})
    origin: dict[str, str] = {}  # nextmm key -> official key, for messages
    unused = []
    for key, tensor in official.items():
        target = _projector_key(key)
        if target is not None:
            parts.projectors[target], origin[target] = tensor, key
        elif (match := LORA_KEY.match(key)) is not None:
            target = f"{match['module']}.{match['ab']}.weight"
            parts.adapter[target], origin[target] = tensor, key
        elif (name := next((n for n, keys in EMBEDDING_KEYS.items() if key in keys), None)) is not None:
            if name in parts.embeddings:
                raise ConfigError(f"{source} holds both {origin[name]} and {key}: keep one")
            parts.embeddings[name], origin[name] = tensor, key
        else:
            unused.append(key)
    for name, matrix in parts.embeddings.items():
        delta = _delta_key(expected.adapter, name)
        if delta is not None and matrix.dim() == 2 and matrix.shape[0] > max(token_ids):
            parts.adapter[delta], origin[delta] = matrix[list(token_ids)], origin[name]
    problems = [f"unused official key {k} {tuple(official[k].shape)}" for k in sorted(unused)]
    for group in ("projectors", "adapter", "embeddings"):
        found, wanted = getattr(parts, group), getattr(expected, group)
        for key in sorted(wanted.keys() - found.keys()):
            problems.append(f"missing official key {_official_name(key, expected)} {tuple(wanted[key].shape)}")
        for key in sorted(found.keys() - wanted.keys()):
            problems.append(f"unused official key {origin[key]} {tuple(found[key].shape)} (the config has no "
                            f"{key})")
        for key in sorted(found.keys() & wanted.keys()):
            if tuple(found[key].shape) != tuple(wanted[key].shape):
                note = " (rows = the tokenizer's size)" if group == "embeddings" else ""
                problems.append(f"{origin[key]} has shape {tuple(found[key].shape)}, the model config expects "
                                f"{tuple(wanted[key].shape)}{note}")
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise ConfigError(f"{source} does not fit the model config: {shown}")
    for group in (parts.projectors, parts.adapter, parts.embeddings):
        for key, tensor in group.items():
            group[key] = tensor.detach().clone().contiguous()  # own storage: safetensors refuses shared tensors
    return parts


def convert_checkpoint(
    source: str | Path, output: str | Path, model: str | Path | DictConfig = "nextgpt_7b", *,
    overrides: Sequence[str] = (), overwrite: bool = False,
) -> Path:
    """Convert the release in ``source`` into a nextmm trained-parts folder at ``output``, atomically."""
    source, output = Path(source), Path(output)
    if output.exists() and not overwrite:
        raise ConfigError(f"output {output} already exists: remove it or pass overwrite=true")
    cfg = model if isinstance(model, DictConfig) else load_model_config(model, overrides)
    counts = cfg.signal_tokens
    official_file(source)
    check_release_files(source)  # before the 7B file is read: a missing small file fails in a second
    official = load_official(source)
    tokenizer = load_official_tokenizer(source, counts)
    token_ids = tokenizer.convert_tokens_to_ids(added_tokens(counts))
    expected = expected_tensors(cfg, len(tokenizer), token_ids)
    parts = convert_state(official, expected, token_ids, str(source / OFFICIAL_FILE))
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("trained", None)
    config["prompt_format"] = "nextgpt"  # the release's LoRA was tuned on the original's format, whatever model= is
    config["llm"]["tokenizer"] = str(output / TOKENIZER_DIR)
    write_trained_parts(parts, expected.peft_config, tokenizer, OmegaConf.create(config), output)
    log.info("converted %s (%d tensors) into %s", source, len(official), output)
    return output


def write_trained_parts(
    parts: TrainedParts, peft_config: LoraConfig, tokenizer: PreTrainedTokenizerBase, config: DictConfig,
    folder: Path,
) -> Path:
    """Write the folder ``load_trained_parts`` reads, through a temporary folder renamed into place."""
    with staged_folder(folder) as staging:
        save_file(parts.projectors, staging / PROJECTORS_FILE)
        save_file(parts.embeddings, staging / EMBEDDINGS_FILE)
        adapter_config = copy.deepcopy(peft_config)
        adapter_config.inference_mode = True  # as PeftModel.save_pretrained writes it
        adapter_config.save_pretrained(str(staging / ADAPTER_DIR))
        save_file(parts.adapter, staging / ADAPTER_DIR / ADAPTER_WEIGHTS, metadata={"format": "pt"})
        tokenizer.save_pretrained(str(staging / TOKENIZER_DIR))
        OmegaConf.save(config, staging / CONFIG_FILE)
    return folder


# -------------------------------------------------------------------------------------------- helpers
def _projector_key(key: str) -> str | None:
    if key.startswith(INPUT_PROJECTOR):
        return f"input_projector.proj.{key.removeprefix(INPUT_PROJECTOR)}"
    for modality, prefix in OUTPUT_PROJECTORS.items():
        if key.startswith(prefix):
            rest = key.removeprefix(prefix)
            for old, new in PROJECTOR_NAMES:
                if rest.startswith(old):
                    return f"output_projectors.{modality}.{new}{rest.removeprefix(old)}"
    return None


def _delta_key(adapter: Mapping[str, torch.Tensor], embedding: str) -> str | None:
    """The adapter key of the new-token rows of ``embed_tokens.weight`` or ``lm_head.weight``."""
    layer = embedding.split(".")[0]
    return next((k for k in adapter if k.endswith("trainable_tokens_delta") and f".{layer}." in k), None)


def _official_name(key: str, expected: Expected) -> str:
    """The official key a nextmm key comes from (for messages about missing tensors)."""
    if key in EMBEDDING_KEYS:
        return EMBEDDING_KEYS[key][0]
    for name in EMBEDDING_KEYS:
        if key == _delta_key(expected.adapter, name):
            return f"{EMBEDDING_KEYS[name][0]} (its rows of the added tokens)"
    if key.startswith("input_projector.proj."):
        return INPUT_PROJECTOR + key.removeprefix("input_projector.proj.")
    if key.startswith("output_projectors."):
        modality, rest = key.removeprefix("output_projectors.").split(".", 1)
        for old, new in PROJECTOR_NAMES:
            if rest.startswith(new):
                return f"{OUTPUT_PROJECTORS[modality]}{old}{rest.removeprefix(new)}"
    return "llama_model." + re.sub(r"\.(lora_[AB])\.weight$", r".\1.default.weight", key)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def main(cfg: DictConfig) -> int:
    output = convert_checkpoint(cfg.source, cfg.output, cfg.model, overwrite=cfg.overwrite)
    print(f"converted {cfg.source} -> {output}; use it with model={output}")
    return 0
