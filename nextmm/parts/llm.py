"""The language model: a Llama (Vicuna) causal LM with signal tokens and a LoRA adapter.

The tokenizer gains the media markers and the signal tokens; their embedding and output rows are the
only new rows, and peft trains exactly those rows (``trainable_token_indices``) next to LoRA.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import string
import weakref
from collections.abc import Mapping
from pathlib import Path

import torch
from accelerate import init_empty_weights
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from transformers import (
    AutoTokenizer,
    BitsAndBytesConfig,
    CompileConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizer,
    PreTrainedTokenizerBase,
    StaticCache,
)

from nextmm.config import resolve_path
from nextmm.errors import ConfigError
from nextmm.modality import MEDIA_END, MEDIA_START, MODALITIES, signal_tokens

log = logging.getLogger(__name__)


def added_tokens(signal_counts: Mapping[str, int]) -> list[str]:
    """Tokens nextmm adds to the LLM's vocabulary, in order: media markers, then signal tokens."""
    tokens = [MEDIA_START, MEDIA_END]
    for modality in MODALITIES:
        tokens += signal_tokens(modality, signal_counts[modality])
    return tokens


def character_tokenizer(size: int | None = None) -> LlamaTokenizer:
    """A Llama tokenizer over single characters with byte fallback, built without any download.

    Enough for tiny random models; real models load their own tokenizer folder. ``size`` pads the
    vocabulary with unused tokens, so a random model of a real vocabulary size (32000) can be driven.
    """
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for char in "▁" + string.ascii_letters + string.digits + string.punctuation:
        vocab[char] = len(vocab)
    for unused in range(len(vocab), size or 0):
        vocab[f"<unused{unused}>"] = unused
    return LlamaTokenizer(vocab=vocab, merges=[], add_prefix_space=True)


# A tokenizer folder as transformers 4.x's slow LlamaTokenizer saves it (Vicuna's, the official release's), what each
# file holds; a folder with tokenizer.json (a fast tokenizer's, as nextmm convert writes) needs that and its config.
SLOW_TOKENIZER_FILES = {
    "tokenizer.model": "the sentencepiece vocabulary",
    "added_tokens.json": "the added tokens and their ids",
    "tokenizer_config.json": "the tokenizer's settings",
    "special_tokens_map.json": "<s>, </s>, <unk>",
}
FAST_TOKENIZER_FILES = {"tokenizer.json": "the whole tokenizer", "tokenizer_config.json": "the tokenizer's settings"}


def missing_tokenizer_files(folder: Path, *, added: bool = True) -> list[str]:
    """The files a tokenizer folder lacks, each as "name (what it holds)". ``added=False``: a base tokenizer
    (Vicuna's), whose slow save has no added_tokens.json."""
    wanted = FAST_TOKENIZER_FILES if (folder / "tokenizer.json").is_file() else dict(SLOW_TOKENIZER_FILES)
    if not added:
        wanted.pop("added_tokens.json", None)
    return [f"{name} ({what})" for name, what in wanted.items() if not (folder / name).is_file()]


def build_tokenizer(cfg: Mapping, signal_counts: Mapping[str, int]) -> PreTrainedTokenizerBase:
    """The LLM tokenizer (from ``cfg.tokenizer`` folder, or offline characters) plus nextmm's tokens."""
    path = resolve_path(cfg.get("tokenizer"))
    if path:
        if not Path(path).is_dir():
            raise ConfigError(
                f"tokenizer folder not found: {path} (expected a transformers tokenizer folder with "
                "tokenizer.model or tokenizer.json; see the README's 'real weights' section)"
            )
        missing = missing_tokenizer_files(Path(path), added=False)
        if missing:
            raise ConfigError(
                f"tokenizer folder {path} lacks {', '.join(missing)}: for a converted release run python -m nextmm "
                "convert again; for Vicuna copy the files from the folder FastChat's apply_delta wrote "
                "(docs/real_weights.md#vicuna-7b-v0)"
            )
        tokenizer = AutoTokenizer.from_pretrained(path)
    else:
        tokenizer = character_tokenizer(cfg.get("architecture", {}).get("vocab_size"))
    vocab = tokenizer.get_vocab()
    missing = [token for token in added_tokens(signal_counts) if token not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def context_length(cfg: Mapping) -> int:
    """The LLM's context in tokens, without loading it: its folder's config.json, else the config's architecture."""
    path = resolve_path(cfg.get("path"))
    if path and (path / "config.json").is_file():
        return int(json.loads((path / "config.json").read_text())["max_position_embeddings"])
    return int(cfg["architecture"]["max_position_embeddings"])


def build_llm(cfg: Mapping, vocab_size: int, trainable_token_ids: list[int], *, empty: bool = False,
              device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> PeftModel:
    """LlamaForCausalLM (random from ``cfg.architecture``, or loaded from ``cfg.path``) with LoRA.

    ``vocab_size`` is the tokenizer's size after nextmm's tokens were added; the embeddings are resized
    to it, and ``trainable_token_ids`` (the new rows) train through peft next to LoRA. ``cfg.quantize``
    (int8 or nf4) loads the pretrained weights' linear layers quantized by bitsandbytes, straight onto
    ``device`` computing in ``dtype``; LoRA, the embeddings and the output layer stay in full precision.
    """
    if empty:
        with init_empty_weights():
            model = LlamaForCausalLM(LlamaConfig(**cfg["architecture"]))
            return _adapt(model, cfg, vocab_size, trainable_token_ids)
    path = resolve_path(cfg.get("path"))
    if path and not (path / "config.json").is_file():
        raise ConfigError(
            f"LLM weights not found: {path} (expected a transformers folder with config.json and "
            "*.safetensors; see docs/real_weights.md)"
        )
    quantization = quantization_config(cfg.get("quantize"), dtype)
    attention = attention_implementation(cfg.get("attn_implementation"))
    check_decoding_options(cfg)
    if quantization is not None and not path:
        raise ConfigError(f"llm.quantize={cfg.get('quantize')} quantizes pretrained weights: set llm.path to the "
                          "LLM's folder (a model built at random has none), or llm.quantize=null")
    # Seeded throughout: random weights, new embedding rows and LoRA's initialisation alike.
    with torch.random.fork_rng():
        torch.manual_seed(cfg.get("seed", 0))
        if path and quantization is not None:
            model = LlamaForCausalLM.from_pretrained(path, quantization_config=quantization, dtype=dtype,
                                                     device_map={"": str(device)})
        elif path:
            model = LlamaForCausalLM.from_pretrained(path)
        else:
            model = LlamaForCausalLM(LlamaConfig(**cfg["architecture"]))
        if attention is not None:
            model.set_attn_implementation(attention)
        return _adapt(model, cfg, vocab_size, trainable_token_ids)


QUANTIZE_KINDS = ("int8", "nf4")


def quantization_config(kind: str | None, dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """bitsandbytes' settings for ``llm.quantize``: int8 (LLM.int8()) or nf4 (4-bit NormalFloat, double-quantized,
    computing in ``dtype``); None for null."""
    if kind is None:
        return None
    if kind not in QUANTIZE_KINDS:
        raise ConfigError(f"llm.quantize={kind}: give null, {' or '.join(QUANTIZE_KINDS)}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"llm.quantize={kind} needs bitsandbytes: pip install -e \".[quantize]\"")
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)


def is_quantized(llm: torch.nn.Module) -> bool:
    """Whether the LLM's linear layers were loaded quantized (they stay where they were loaded, in their format)."""
    base = llm.get_base_model() if isinstance(llm, PeftModel) else llm
    return getattr(base, "hf_quantizer", None) is not None


def _adapt(model: LlamaForCausalLM, cfg: Mapping, vocab_size: int, token_ids: list[int]) -> PeftModel:
    if model.get_input_embeddings().num_embeddings != vocab_size:
        # New rows start at the mean of the old ones (transformers' default), a sane prior for new words.
        model.resize_token_embeddings(vocab_size, mean_resizing=not _is_meta(model))
    lora = cfg["lora"]
    token_layers = {"embed_tokens": list(token_ids)}
    if not model.config.tie_word_embeddings:
        token_layers["lm_head"] = list(token_ids)
    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        trainable_token_indices=token_layers,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _is_meta(model: torch.nn.Module) -> bool:
    return next(model.parameters()).device.type == "meta"


# ------------------------------------------------------------------------------------- answering faster
# Options of the answering path (nextmm.inference.conversation), each off unless set: none changes what training does.
ATTENTION_KINDS = {"eager": None, "sdpa": None, "flash_attention_2": "flash_attn"}  # kind -> the package it needs
KV_CACHES = ("dynamic", "static")


def attention_implementation(kind: str | None) -> str | None:
    """``llm.attn_implementation``: eager, sdpa (PyTorch's fused attention; transformers' default) or
    flash_attention_2 (the flash-attn package, CUDA, fp16/bf16); None keeps transformers' default."""
    if kind is None:
        return None
    if kind not in ATTENTION_KINDS:
        raise ConfigError(f"llm.attn_implementation={kind}: give {', '.join(ATTENTION_KINDS)} or null")
    package = ATTENTION_KINDS[kind]
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"llm.attn_implementation={kind} needs the {package} package (CUDA): pip install "
                          f"{package.replace('_', '-')}, or set llm.attn_implementation=sdpa")
    return kind


def check_decoding_options(cfg: Mapping) -> None:
    """``llm.kv_cache`` (dynamic | static), ``llm.compile`` and ``llm.merge_for_inference`` (true | false): one
    line naming a bad value or combination."""
    kv_cache, compile_, merge = cfg.get("kv_cache"), cfg.get("compile"), cfg.get("merge_for_inference")
    if kv_cache is not None and kv_cache not in KV_CACHES:
        raise ConfigError(f"llm.kv_cache={kv_cache}: give {' or '.join(KV_CACHES)}")
    for key, value in (("compile", compile_), ("merge_for_inference", merge)):
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"llm.{key}={value}: give true or false")
    if compile_ and kv_cache != "static":
        raise ConfigError("llm.compile=true compiles decoding over a cache of fixed shape: set llm.kv_cache=static "
                          "too (transformers compiles only static caches)")
    if merge and cfg.get("quantize") is not None:
        raise ConfigError(f"llm.merge_for_inference=true cannot merge LoRA into {cfg.get('quantize')} weights "
                          "without rounding them again: set llm.quantize=null or llm.merge_for_inference=false")


@contextlib.contextmanager
def token_rows_written_in(llm: torch.nn.Module):
    """For the length of a turn, the trained token rows written into the embedding and output matrices once.

    peft's trainable token rows otherwise rebuild the whole (V, H) matrix at every forward, twice a decoding step
    (embedding and output layer). peft's own merge writes the same rows into the same matrix, so every forward
    computes bit for bit what it did; they are taken out again at the end, so training never sees them merged."""
    layers = [module for module in llm.modules() if isinstance(module, TrainableTokensLayer) and not module.merged]
    for layer in layers:
        layer.merge()
    try:
        yield
    finally:
        for layer in reversed(layers):
            layer.unmerge()


def merged_for_inference(llm: PeftModel) -> LlamaForCausalLM:
    """The LLM with LoRA and the trained token rows folded into its weights (peft's merge_and_unload): the same
    function without the adapter's extra matrix products, for answering only. Rounding differs in the last bits."""
    return llm.merge_and_unload()


def final_norm(llm: torch.nn.Module) -> torch.nn.Module:
    """The LLM's last layer norm: its output at each position is the last-layer state hidden_states[-1]."""
    base = llm.get_base_model() if isinstance(llm, PeftModel) else llm
    return base.get_decoder().norm


_static_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LLM -> ((batch, length), its StaticCache)


def decoding_cache(llm: torch.nn.Module, cfg: Mapping, batch_size: int, max_length: int) -> StaticCache | None:
    """With ``llm.kv_cache=static``: a KV cache of ``max_length`` positions rounded up to a multiple of 256, so that
    prompts of similar length share one compiled graph; the LLM's previous one, emptied, when the batch size and
    length are the same (its tensors keep their addresses, which CUDA graphs rely on). None: generate grows its own
    dynamic cache."""
    if cfg.get("kv_cache") != "static":
        return None
    shape = (batch_size, -(-max_length // 256) * 256)
    kept = _static_caches.get(llm)
    if kept is not None and kept[0] == shape:
        kept[1].reset()
        return kept[1]
    cache = StaticCache(config=llm.config, max_cache_len=shape[1])
    _static_caches[llm] = (shape, cache)
    return cache


def decoding_compile_config(cfg: Mapping, device: torch.device) -> CompileConfig | None:
    """With ``llm.compile=true``: how generate compiles the decoding step (transformers' auto-compile with a static
    cache). CUDA graphs on CUDA (mode reduce-overhead); elsewhere inductor without them, opted in explicitly."""
    if not cfg.get("compile"):
        return None
    config = CompileConfig(fullgraph=False, mode="reduce-overhead" if device.type == "cuda" else "default")
    if device.type != "cuda":
        config._compile_all_devices = True  # transformers compiles on CUDA only unless asked
    return config
