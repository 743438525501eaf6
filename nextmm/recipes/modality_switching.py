"""Stage 3, modality-switching instruction tuning: the whole alignment learns to follow instructions.

    python -m nextmm train modality_switching model=tiny data=instructions output_dir=runs/modality_switching \\
        init_from=runs/decoder_side/final train.max_steps=1000
    accelerate launch --multi_gpu --num_processes 2 -m nextmm train modality_switching model=nextgpt_7b output_dir=runs/ms

Instruction data of every kind, mixed in one batch: LLaVA, VideoChat (X + text -> text), Alpaca (text ->
text), T2M (text -> text + X) and MosIT (multi-turn, any to any). Losses: NLL of every answer, plus for
each medium an answer produces the alignment of its signal tokens' projection to the decoder's own
conditioning of its caption (and, with ``loss.denoising_weight`` > 0, the denoising loss on its target
media). LoRA, both projectors and the new token rows train (nextmm/conf/stage/modality_switching.yaml).
"""

from __future__ import annotations

from omegaconf import DictConfig

# The data and the loss are the decoder side's: its dataset reads every instruction format too.
from nextmm.recipes.decoder_side import dataset_for, loss_for
from nextmm.training.stage import train_stage

STAGE = "modality_switching"


def train(cfg: DictConfig) -> dict:
    return train_stage(cfg, STAGE, dataset_for=lambda model: dataset_for(cfg, model),
                       loss_for=lambda model: loss_for(cfg, model))


def main(cfg: DictConfig) -> None:
    train(cfg)
