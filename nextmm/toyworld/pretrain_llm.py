"""Pretraining what NExT-GPT takes pretrained, the language side: a small Llama that knows English words.

    python -m nextmm world output=data/toyworld seed=0 samples=200 instructions=50
    python -m nextmm train pretrain_llm data_root=data/toyworld output_dir=runs/pretrain_llm train.max_steps=2000

The tokenizer is Vicuna's (the Llama-2 vocabulary, as the `wordllama` package ships it), so token ids are the
real model's and nextmm's added tokens get ids from 32000 as in NExT-GPT's release. The input embeddings start
as wordllama's vectors of those tokens, in which synonyms are neighbours (nextmm/toyworld/word_vectors.py). The
output layer is the same matrix (tied). The model then learns the world's text (nextmm/toyworld/corpus.py) by
next-token prediction on packed blocks of documents, each "<s> ... </s>".

The world's text uses a few thousand of the 32000 tokens (the shortlist). Only their rows of the embedding
train, slowly (``embeddings.lr``; 0 keeps them frozen), through a delta added to them: every other word keeps
its vector exactly, so a word the world's text never uses keeps its place beside the words it does use, and
"footage" reads like "video" though no request ever said it. Frozen rows cannot tell near-synonyms apart as
outputs ("the" from "The"), which a slow delta does. The loss is the softmax over the shortlist alone (about a
tenth of the cost of the full output layer on a CPU), and the saved generation config suppresses every other
token, so the model never emits a token it was not trained to rank. The stages'
next-token loss honours the same list (nextmm.training.losses.answer_nll). Both end in <output_dir>/llm/, a transformers
folder (float16 safetensors, its tokenizer, generation_config.json) that ``model.llm.path`` and
``model.llm.tokenizer`` load.

Training runs on the one loop (nextmm.training.loop): checkpoints every ``checkpoint.every`` steps under
<output_dir>/checkpoints/, and ``resume=true`` continues the newest with the losses an uninterrupted run has.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from nextmm.atomic import staged_folder
from nextmm.errors import ConfigError
from nextmm.toyworld.corpus import Document, corpus_documents
from nextmm.toyworld.word_vectors import llama_tokenizer, word_vectors
from nextmm.training.checkpoints import CHECKPOINTS, Checkpoints, ModuleWeights
from nextmm.training.loop import ModuleLoss, RandomBatches, train_loop
from nextmm.training.run import BatchSize, start_run

STAGE = "pretrain_llm"
LLM_DIR = "llm"

log = logging.getLogger(STAGE)


# ------------------------------------------------------------------------------------------- text
def token_stream(documents: Sequence[Document], tokenizer: PreTrainedTokenizerFast) -> torch.Tensor:
    """All documents as one (N,) id stream, each "<s> pieces </s>"; pieces are tokenized one by one as
    NextMM tokenizes prompt segments, so pretraining sees the stages' token boundaries."""
    ids: list[int] = []
    for document in documents:
        ids.append(tokenizer.bos_token_id)
        for piece in document:
            ids += tokenizer(piece, add_special_tokens=False).input_ids
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def random_blocks(stream: torch.Tensor, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(B, length) windows of the stream at random offsets."""
    if stream.numel() <= length:
        raise ConfigError(f"the corpus has {stream.numel()} tokens, fewer than train.seq_len={length}")
    starts = torch.randint(0, stream.numel() - length, (batch_size,), generator=generator)
    return torch.stack([stream[s : s + length] for s in starts.tolist()])


class Shortlist(torch.nn.Module):
    """The tokens the model reads and emits in training: the ids of the corpus (sorted), each id's place among
    them, and the trained change of their embedding rows (``delta``, (S, H), zero at the start)."""

    def __init__(self, *streams: torch.Tensor, vocab_size: int, width: int = 0):
        super().__init__()
        ids = torch.unique(torch.cat(streams))  # (S,)
        position = torch.full((vocab_size,), -1, dtype=torch.long)
        position[ids] = torch.arange(len(ids))
        self.register_buffer("ids", ids)
        self.register_buffer("position", position)
        self.delta = torch.nn.Parameter(torch.zeros(len(ids), width))

    def rows(self, weight: torch.Tensor) -> torch.Tensor:
        """The shortlist's embedding rows with their change: (S, H)."""
        return weight[self.ids] + self.delta

    def embed(self, weight: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """(B, T) ids, all of the shortlist -> (B, T, H) input embeddings."""
        return weight[batch] + self.delta[self.position[batch]]

    @torch.no_grad()
    def merge(self, weight: torch.Tensor) -> None:
        """Write the trained rows into the embedding (once, before saving)."""
        weight[self.ids] += self.delta.to(weight.dtype)
        self.delta.zero_()

    def suppressed(self, vocab_size: int) -> list[int]:
        """Every other id below ``vocab_size``: what generation must never emit."""
        return sorted(set(range(vocab_size)) - set(self.ids.tolist()))


# ------------------------------------------------------------------------------------------- model
def build_model(architecture: dict, tokenizer: PreTrainedTokenizerFast, vectors: torch.Tensor, norm: float,
                seed: int) -> LlamaForCausalLM:
    """A Llama whose tied input/output embedding starts as ``vectors`` (V, H), scaled to a mean row norm of
    ``norm``; rows past them (the media markers) are drawn at the same scale."""
    if architecture["hidden_size"] != vectors.shape[1]:
        raise ConfigError(f"architecture.hidden_size={architecture['hidden_size']}: it must be the word vectors' "
                          f"width, {vectors.shape[1]}")
    config = LlamaConfig(
        **architecture, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=None, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    scaled = vectors * (norm / vectors.norm(dim=1).mean())
    extra = len(tokenizer) - len(vectors)
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        weight[: len(vectors)] = scaled
        weight[len(vectors) :] = torch.randn(extra, vectors.shape[1]) * scaled.std()
    return model


def shortlist_loss(model: LlamaForCausalLM, batch: torch.Tensor, shortlist: Shortlist) -> torch.Tensor:
    """Mean next-token NLL of (B, T) ids, the softmax taken over the shortlist's tokens only."""
    weight = model.get_input_embeddings().weight  # (V, H), tied to the output layer
    hidden = model.model(inputs_embeds=shortlist.embed(weight, batch)).last_hidden_state[:, :-1]  # (B, T-1, H)
    logits = hidden @ shortlist.rows(weight).T  # (B, T-1, S)
    targets = shortlist.position[batch[:, 1:]]  # (B, T-1)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def train_next_token(accelerator: Accelerator, model: LlamaForCausalLM, stream: torch.Tensor, shortlist: Shortlist,
                     cfg: DictConfig, generator: torch.Generator) -> dict:
    """Next-token prediction on random blocks of ``stream`` for ``cfg.train.max_steps`` steps, on the one loop,
    checkpointed under <output_dir>/checkpoints (``resume=true`` continues the newest); the loop's result."""
    def draw() -> torch.Tensor:
        return random_blocks(stream, cfg.train.batch_size, cfg.train.seq_len, generator).to(model.device)  # (B, T)

    loss = ModuleLoss(lambda batch: {"loss": shortlist_loss(model, batch, shortlist)}, llm=model, shortlist=shortlist)
    checkpoints = Checkpoints(Path(cfg.output_dir) / CHECKPOINTS, accelerator, cfg.checkpoint.keep_last,
                              ModuleWeights(llm=model, shortlist=shortlist), cfg)
    result = train_loop(
        accelerator, name=STAGE, loss=loss, batches=RandomBatches(draw, generator),
        optimizer_for=lambda _: build_optimizer(model, shortlist, cfg), schedule=cfg.optimizer,
        max_steps=cfg.train.max_steps, checkpoints=checkpoints, checkpoint_every=cfg.checkpoint.every,
        resume=cfg.resume, terms=["loss"], batch_size=lambda batch: BatchSize(len(batch), batch.numel()),
        log_every=cfg.logging.every,
    )
    model.eval()
    return result


def build_optimizer(model: LlamaForCausalLM, shortlist: Shortlist, cfg: DictConfig) -> torch.optim.AdamW:
    """AdamW over the transformer; the shortlist's rows change at ``embeddings.lr`` (no weight decay), or stay
    the word vectors at 0. The embedding matrix itself never trains."""
    lr = cfg.embeddings.lr
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and lr >= 0):
        raise ConfigError(f"embeddings.lr={lr}: give 0 (frozen word vectors) or a positive learning rate")
    model.get_input_embeddings().weight.requires_grad_(False)
    shortlist.delta.requires_grad_(lr > 0)
    groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if lr > 0:
        groups.append({"params": [shortlist.delta], "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.optimizer.lr, betas=tuple(cfg.optimizer.betas),
                             weight_decay=cfg.optimizer.weight_decay)


@torch.no_grad()
def validation_loss(model: LlamaForCausalLM, stream: torch.Tensor, shortlist: Shortlist, length: int) -> float:
    """Mean next-token loss over consecutive (1, length) blocks of ``stream``."""
    total, count = 0.0, 0
    for start in range(0, max(1, stream.numel() - 1), length):
        block = stream[start : start + length][None].to(model.device)  # (1, T)
        if block.shape[1] < 2:
            break
        tokens = block.shape[1] - 1
        total += shortlist_loss(model, block, shortlist).item() * tokens
        count += tokens
    return total / count


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, shortlist: Shortlist, output_dir: Path) -> Path:
    """Write <output_dir>/llm/ whole (float16 weights, the shortlist's rows merged, every other token suppressed),
    into a folder aside, then renamed."""
    target = output_dir / LLM_DIR
    shortlist.merge(model.get_input_embeddings().weight)
    model.generation_config.suppress_tokens = shortlist.suppressed(len(tokenizer))
    with staged_folder(target) as staging:
        model.to(torch.float16).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    model.float()
    return target


# -------------------------------------------------------------------------------------------- recipe
def train(cfg: DictConfig) -> dict:
    """Corpus -> tokens -> model -> <output_dir>/llm/; returns the losses, validation loss and folder."""
    for key in ("data_root", "output_dir"):
        if OmegaConf.is_missing(cfg, key) or not cfg[key]:
            raise ConfigError(f"set {key}=<folder>")
    accelerator = start_run(cfg, STAGE)
    if accelerator.num_processes > 1:  # its batches are not shared out: every process would train on the same
        raise ConfigError(f"{STAGE} runs in one process (CUDA when present); start it without accelerate launch")
    generator = torch.Generator().manual_seed(cfg.seed)

    # 1. the corpus, a few documents held out for validation, as Vicuna's token ids
    documents = corpus_documents(cfg.data_root)
    order = torch.randperm(len(documents), generator=generator).tolist()
    held = max(1, int(len(documents) * cfg.train.val_share))
    val_docs, train_docs = [documents[i] for i in order[:held]], [documents[i] for i in order[held:]]
    tokenizer = llama_tokenizer()
    tokenizer.model_max_length = cfg.architecture.max_position_embeddings
    train_stream, val_stream = token_stream(train_docs, tokenizer), token_stream(val_docs, tokenizer)
    shortlist = Shortlist(train_stream, val_stream, vocab_size=len(tokenizer), width=cfg.architecture.hidden_size)
    log.info("corpus: %d documents (%d held out), %d training and %d validation tokens, %d distinct token ids",
             len(documents), held, train_stream.numel(), val_stream.numel(), len(shortlist.ids))

    # 2. the model, its embeddings the word vectors
    device = accelerator.device  # CUDA when present unless device=cpu
    model = build_model(OmegaConf.to_container(cfg.architecture), tokenizer, word_vectors(), cfg.embeddings.norm,
                        cfg.seed).to(device)
    shortlist.to(device)
    log.info("LlamaForCausalLM: %s parameters (%s in the embedding), on %s",
             f"{sum(p.numel() for p in model.parameters()):,}", f"{model.get_input_embeddings().weight.numel():,}",
             device)

    # 3. train, validate, save
    result = train_next_token(accelerator, model, train_stream, shortlist, cfg, generator)
    val_loss = validation_loss(model, val_stream, shortlist, cfg.train.seq_len)
    log.info("validation: loss %.4f, perplexity %.2f", val_loss, math.exp(val_loss))
    folder = save(model, tokenizer, shortlist, Path(cfg.output_dir))
    log.info("wrote %s (model.llm.path=%s model.llm.tokenizer=%s)", folder, folder, folder)
    accelerator.end_training()
    return {"losses": result["losses"], "run_losses": result["run_losses"], "val_loss": val_loss, "folder": folder,
            "tokenizer": tokenizer, "shortlist": shortlist}


def main(cfg: DictConfig) -> None:
    train(cfg)
