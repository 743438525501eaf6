"""Pretraining what NExT-GPT takes pretrained, the language side: a tokenizer and a tiny Llama on the toyworld's text.

    python -m nextmm.toyworld.build output=data/toyworld seed=0 samples=200 instructions=50
    python stages/pretrain_llm.py data_root=data/toyworld output_dir=runs/pretrain_llm train.max_steps=2000

The corpus (nextmm/toyworld/corpus.py) is every training conversation of the toyworld folder in the prompt
format. A byte-level BPE tokenizer is trained on it, then a LlamaForCausalLM from scratch (plain next-token
prediction on packed blocks of documents, each "<s> ... </s>"). Both end in <output_dir>/llm/, a
transformers folder that ``model.llm.path`` and ``model.llm.tokenizer`` load.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from omegaconf import DictConfig, OmegaConf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from nextmm import cli, training
from nextmm.atomic import staged_folder
from nextmm.errors import ConfigError
from nextmm.modality import MEDIA_END, MEDIA_START
from nextmm.toyworld.corpus import Document, corpus_documents, corpus_text

STAGE = "pretrain_llm"
LLM_DIR = "llm"
# ids 0, 1, 2 as in Llama, then the media markers: the corpus writes a stand-in word between them where a
# medium goes, so the model learns the markers before the stages put projected media there.
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", MEDIA_START, MEDIA_END)

log = logging.getLogger(STAGE)


# ----------------------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: Sequence[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (no unknown characters) that adds <s> and a leading space like Llama's; decoding
    gives the text back behind that one space."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    # Every piece starts as if after a space, as Llama's sentencepiece does: the first word of a message
    # ("surf vlog" right after "### Human: ", tokenized as its own piece) is the same token as mid-sentence.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        clean_up_tokenization_spaces=False,  # the round trip stays exact (" ." stays " .")
    )


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


# ------------------------------------------------------------------------------------------- model
def build_model(architecture: dict, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        **architecture, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=None,
    )
    return LlamaForCausalLM(config)


def fit(model: LlamaForCausalLM, stream: torch.Tensor, cfg: DictConfig, generator: torch.Generator) -> list[float]:
    """Next-token prediction on random blocks for ``cfg.train.max_steps`` steps; returns each step's loss."""
    optimizer = training.build_optimizer(model, cfg.optimizer)
    scheduler = training.build_scheduler(optimizer, cfg.optimizer, cfg.train.max_steps)
    losses = []
    model.train()
    progress = tqdm(range(cfg.train.max_steps), desc=STAGE, unit="step")
    for step in progress:
        batch = random_blocks(stream, cfg.train.batch_size, cfg.train.seq_len, generator).to(model.device)  # (B, T)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % cfg.logging.every == 0 or step + 1 == cfg.train.max_steps:
            recent = losses[-cfg.logging.every:]
            log.info("step %d: loss %.4f, lr %.2e", step + 1, sum(recent) / len(recent), scheduler.get_last_lr()[0])
    progress.close()
    model.eval()
    return losses


@torch.no_grad()
def evaluate(model: LlamaForCausalLM, stream: torch.Tensor, length: int) -> float:
    """Mean next-token loss over consecutive (1, length) blocks of ``stream``."""
    total, count = 0.0, 0
    for start in range(0, max(1, stream.numel() - 1), length):
        block = stream[start : start + length][None].to(model.device)  # (1, T)
        if block.shape[1] < 2:
            break
        tokens = block.shape[1] - 1
        total += model(input_ids=block, labels=block).loss.item() * tokens
        count += tokens
    return total / count


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, output_dir: Path) -> Path:
    """Write <output_dir>/llm/ whole: into a folder aside, then renamed."""
    target = output_dir / LLM_DIR
    with staged_folder(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return target


# -------------------------------------------------------------------------------------------- recipe
def train(cfg: DictConfig) -> dict:
    """Corpus -> tokenizer -> model -> <output_dir>/llm/; returns the losses, validation loss and folder."""
    for key in ("data_root", "output_dir"):
        if OmegaConf.is_missing(cfg, key) or not cfg[key]:
            raise ConfigError(f"set {key}=<folder>")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)

    # 1. the corpus, a few documents held out for validation
    documents = corpus_documents(cfg.data_root)
    order = torch.randperm(len(documents), generator=generator).tolist()
    held = max(1, int(len(documents) * cfg.train.val_share))
    val_docs, train_docs = [documents[i] for i in order[:held]], [documents[i] for i in order[held:]]
    log.info("corpus: %d documents (%d held out for validation)", len(documents), held)

    # 2. the tokenizer, on the training documents
    tokenizer = train_tokenizer(list(corpus_text(train_docs)), cfg.tokenizer.vocab_size, cfg.tokenizer.min_frequency)
    tokenizer.model_max_length = cfg.architecture.max_position_embeddings
    train_stream, val_stream = token_stream(train_docs, tokenizer), token_stream(val_docs, tokenizer)
    log.info("tokenizer: %d tokens; corpus: %d training tokens, %d validation tokens",
             len(tokenizer), train_stream.numel(), val_stream.numel())

    # 3. the model, from scratch
    device = Accelerator(cpu=cfg.device == "cpu").device  # one process: CUDA when present unless device=cpu
    model = build_model(OmegaConf.to_container(cfg.architecture), tokenizer).to(device)
    log.info("LlamaForCausalLM: %s parameters, on %s", f"{sum(p.numel() for p in model.parameters()):,}", device)

    # 4. train, validate, save
    losses = fit(model, train_stream, cfg, generator)
    val_loss = evaluate(model, val_stream, cfg.train.seq_len)
    log.info("validation: loss %.4f, perplexity %.2f", val_loss, math.exp(val_loss))
    folder = save(model, tokenizer, Path(cfg.output_dir))
    log.info("wrote %s (model.llm.path=%s model.llm.tokenizer=%s)", folder, folder, folder)
    return {"losses": losses, "val_loss": val_loss, "folder": folder, "tokenizer": tokenizer}


def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    cli.run(f"stage/{STAGE}", main, command=f"python stages/{STAGE}.py")
