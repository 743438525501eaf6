"""Stage 1, encoder-side alignment: the input projector learns to hand the LLM media it can caption.

    python -m nextmm train encoder_side model=tiny data=pairs output_dir=runs/encoder_side train.max_steps=1000
    python -m nextmm precompute kind=features model=tiny data=pairs output=runs/features   # optional, once:
    python -m nextmm train encoder_side model=tiny data=pairs features=runs/features output_dir=runs/encoder_side
    accelerate launch --multi_gpu --num_processes 2 -m nextmm train encoder_side model=nextgpt_7b output_dir=runs/encoder_side

Each X-caption pair becomes "### Human: <Img>[medium]</Img> Describe this image briefly.\\n### Assistant:
<caption>\\n###" and the loss is the NLL of the caption. Only the input projector trains
(nextmm/conf/stage/encoder_side.yaml). The trained parts end in <output_dir>/final, the next stage's init_from.
"""

from __future__ import annotations

from omegaconf import DictConfig

from nextmm.data import build_dataset
from nextmm.training.losses import StageLoss
from nextmm.training.stage import train_stage

STAGE = "encoder_side"


def dataset_for(cfg: DictConfig, model):
    """Each pair asks about its medium; the caption is the answer."""
    return build_dataset(
        cfg.data, tokenizer=model.tokenizer, signal_counts=model.config.signal_tokens,
        prompt_format=model.prompt_format,
        pairs="comprehension", pair_prompt=cfg.pair_prompt, features=cfg.features, encoder_cfg=model.config.encoder,
    )


def loss_for(cfg: DictConfig, model) -> StageLoss:
    """The NLL of the caption."""
    return StageLoss(model, pack=cfg.train.pack_sequences, pack_length=cfg.train.pack_length)


def train(cfg: DictConfig) -> dict:
    return train_stage(cfg, STAGE, dataset_for=lambda model: dataset_for(cfg, model),
                       loss_for=lambda model: loss_for(cfg, model))


def main(cfg: DictConfig) -> None:
    train(cfg)
