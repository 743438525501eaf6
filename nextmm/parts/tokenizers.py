"""Tokenizers for the decoders' text encoders, built with nothing downloaded.

Real pipeline folders carry their own tokenizer; these are for decoders built from `components` configs (tiny
test decoders, and the full-size skeletons that are only counted). A decoder config names one as

    tokenizer: {class: CLIPTokenizer, offline: clip_bpe, model_max_length: 77}

`class` is the transformers tokenizer class, `offline` the vocabulary it is built from:

- CLIPTokenizer / `clip_bpe`: CLIP's byte-level BPE (49408 entries), as Stable Diffusion's and Zeroscope's
  tokenizers. The merges ship inside the `imagebind` distribution; the file is read directly because importing
  `imagebind` runs its data module, which fails on the current stack.
- RobertaTokenizer / `bytes`: the 256 byte-level symbols and no merges, one token per byte: 261 entries with
  RoBERTa's special tokens, small enough for a tiny CLAP text encoder (the real CLAP vocabulary is RoBERTa's
  50265-entry BPE, which does not ship anywhere offline).
- RobertaTokenizer / `toyworld_bpe`: RoBERTa's byte-level BPE fitted to every caption the toyworld writes
  (nextmm.toyworld.language.caption_corpus), at most TOYWORLD_BPE_SIZE entries: the world's words are single
  tokens, so a tiny CLAP text encoder pools a few meaningful tokens instead of dozens of bytes (with `bytes`
  its pooled embeddings of different captions start out, and stay, nearly identical).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path

from transformers import CLIPTokenizer, PreTrainedTokenizerBase, RobertaTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from nextmm.errors import ConfigError

CLIP_START, CLIP_END = "<|startoftext|>", "<|endoftext|>"
# CLIP's SimpleTokenizer keeps the first 49152 - 256 - 2 merges of the file (line 0 is a version header).
CLIP_NUM_MERGES = 49152 - 256 - 2
ROBERTA_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3 as in roberta-base; <mask> comes last
TOYWORLD_BPE_SIZE = 1024


def clip_bpe_path() -> Path:
    """The CLIP BPE merges file inside the installed imagebind distribution (found without importing it)."""
    spec = importlib.util.find_spec("imagebind")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("offline tokenizer clip_bpe needs the imagebind-unofficial distribution installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise ConfigError(f"CLIP BPE merges not found at {path}")
    return path


@functools.cache
def clip_bpe_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary and merges, derived exactly as CLIP's SimpleTokenizer does.

    Vocabulary order: the 256 byte symbols, the same with "</w>", one entry per merge, then the two specials
    (49408 entries; <|startoftext|> = 49406, <|endoftext|> = 49407).
    """
    lines = gzip.open(clip_bpe_path(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : CLIP_NUM_MERGES + 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [CLIP_START, CLIP_END]
    return {t: i for i, t in enumerate(tokens)}, merges


def clip_tokenizer(vocab: str = "clip_bpe", model_max_length: int = 77) -> CLIPTokenizer:
    """A CLIPTokenizer like Stable Diffusion's: pads with <|endoftext|> to `model_max_length`."""
    if vocab != "clip_bpe":
        raise ConfigError(f"unknown offline vocabulary {vocab!r} for CLIPTokenizer: use clip_bpe")
    token_ids, merges = clip_bpe_vocab()
    return CLIPTokenizer(vocab=dict(token_ids), merges=list(merges), model_max_length=model_max_length)


@functools.cache
def toyworld_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges fitted to the toyworld's captions: <s> <pad> </s> <unk> <mask>, the
    256 byte symbols, then merged tokens up to TOYWORLD_BPE_SIZE entries. Deterministic: same corpus, same order."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from nextmm.toyworld.language import caption_corpus

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # a caption's first word as any other
    trainer = trainers.BpeTrainer(
        vocab_size=TOYWORLD_BPE_SIZE, special_tokens=[*ROBERTA_SPECIALS, "<mask>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(caption_corpus(), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def roberta_tokenizer(vocab: str = "bytes", model_max_length: int = 512) -> RobertaTokenizer:
    """A byte-level RobertaTokenizer (as CLAP's): `bytes`, no merges (<s> <pad> </s> <unk>, 256 bytes, <mask>),
    or `toyworld_bpe` (see the module docstring)."""
    if vocab == "bytes":
        tokens = [*ROBERTA_SPECIALS, *bytes_to_unicode().values(), "<mask>"]
        token_ids, merges, prefix_space = {t: i for i, t in enumerate(tokens)}, [], False
    elif vocab == "toyworld_bpe":
        (token_ids, merges), prefix_space = toyworld_bpe(), True
    else:
        raise ConfigError(f"unknown offline vocabulary {vocab!r} for RobertaTokenizer: use bytes or toyworld_bpe")
    return RobertaTokenizer(vocab=dict(token_ids), merges=list(merges), model_max_length=model_max_length,
                            add_prefix_space=prefix_space)


BUILDERS = {"CLIPTokenizer": clip_tokenizer, "RobertaTokenizer": roberta_tokenizer}


def build_tokenizer(cfg: Mapping) -> PreTrainedTokenizerBase:
    """The tokenizer a config entry `{class, offline, model_max_length}` describes."""
    name = cfg["class"]
    if name not in BUILDERS:
        raise ConfigError(f"no offline tokenizer of class {name!r}: use one of {', '.join(BUILDERS)}")
    return BUILDERS[name](cfg["offline"], model_max_length=int(cfg["model_max_length"]))
