"""What the toy LLM knows of English before it reads the toyworld: Vicuna's vocabulary and a meaning per token.

The `wordllama` package (MIT) ships inside its wheel the Llama-2 tokenizer (32000 tokens: the vocabulary
Vicuna uses, ``<s>`` = 1, ``▁`` word starts) and a (32000, 256) float16 embedding of every one of its tokens,
distilled from large LLMs' token embeddings. Neighbours in it are synonyms (picture ~ photo ~ image, movie ~
film, beach ~ coast ~ shore), so a toy LLM whose input embeddings are these vectors reads a word it never met
in training like the words it did meet. Nothing is downloaded: both files are read from the installed package.

    tokenizer = llama_tokenizer()          # Vicuna's ids; <Img> 32000, </Img> 32001 as in NExT-GPT's release
    vectors = word_vectors()               # (32000, 256) float32, row i = token i
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from nextmm.errors import ConfigError
from nextmm.modality import MEDIA_END, MEDIA_START

PACKAGE = "wordllama"
TOKENIZER_FILE = "tokenizers/l2_supercat_tokenizer_config.json"
VECTORS_FILE = "weights/l2_supercat_256.safetensors"
VECTORS_KEY = "embedding.weight"
VOCAB_SIZE = 32000


def _package_file(relative: str):
    if importlib.util.find_spec(PACKAGE) is None:
        raise ConfigError(f"the toy LLM's word vectors come from the {PACKAGE} package: pip install -e . installs it")
    path = importlib.resources.files(PACKAGE) / relative
    if not path.is_file():
        raise ConfigError(f"{PACKAGE} has no {relative}: install the version pyproject.toml names")
    return path


def llama_tokenizer() -> PreTrainedTokenizerFast:
    """The Llama-2 / Vicuna tokenizer (ids 0-31999) with the media markers added as special tokens (32000, 32001).

    Like Llama's, it starts every text with a word start, so a message tokenized apart from the prompt text
    before it ("surf vlog" after "### Human: ") gives the same tokens as mid-sentence.
    """
    backend = Tokenizer.from_file(str(_package_file(TOKENIZER_FILE)))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        clean_up_tokenization_spaces=False,  # the round trip stays exact
    )
    tokenizer.add_tokens([MEDIA_START, MEDIA_END], special_tokens=True)
    return tokenizer


@functools.cache
def _vectors() -> torch.Tensor:
    vectors = load_file(str(_package_file(VECTORS_FILE)))[VECTORS_KEY]
    if vectors.shape[0] != VOCAB_SIZE:
        raise ConfigError(f"{PACKAGE}'s word vectors have {vectors.shape[0]} rows, not {VOCAB_SIZE}")
    return vectors


def word_vectors() -> torch.Tensor:
    """(32000, 256) float32: row i is token i's vector (a copy: callers may change it)."""
    return _vectors().float().clone()
