"""Stage 2, decoder-side alignment: the signal tokens learn to carry what each decoder needs.

    python -m nextmm precompute model=tiny data=pairs output=runs/targets      # optional, once
    python -m nextmm train decoder_side model=tiny data=pairs targets=runs/targets output_dir=runs/decoder_side \\
        init_from=runs/encoder_side/final train.max_steps=1000
    accelerate launch --multi_gpu --num_processes 2 -m nextmm train decoder_side model=nextgpt_7b output_dir=runs/decoder_side

Each X-caption pair becomes a request ("Make this image: <caption>") answered by the modality's signal
tokens. Losses: NLL of the answer, plus the distance between the output projector's conditioning and the
decoder's own text-encoder conditioning of the caption (precomputed with ``targets=``, else computed now),
plus, with ``loss.denoising_weight`` > 0, the frozen UNet's min-SNR-weighted denoising loss on the pair's
medium. The output projectors and the new token rows train (nextmm/conf/stage/decoder_side.yaml).
"""

from __future__ import annotations

from omegaconf import DictConfig

from nextmm.data import build_dataset
from nextmm.data.decoder_media import decoder_media_spec
from nextmm.training.losses import StageLoss
from nextmm.training.stage import train_stage

STAGE = "decoder_side"


def dataset_for(cfg: DictConfig, model):
    """Each pair asks for its medium; the signal tokens are the answer."""
    denoise = cfg.loss.denoising_weight > 0
    return build_dataset(
        cfg.data, tokenizer=model.tokenizer, signal_counts=model.config.signal_tokens,
        prompt_format=model.prompt_format,
        pairs="generation", pair_prompt=cfg.pair_prompt,
        targets=cfg.targets, decoders_cfg=model.config.decoders,
        features=cfg.get("features"), encoder_cfg=model.config.encoder,  # modality switching's input media
        decoder_media={m: decoder_media_spec(model.decoders, m) for m in model.config.decoders} if denoise else None,
    )


def loss_for(cfg: DictConfig, model) -> StageLoss:
    """NLL, plus alignment of each produced medium's conditioning (and denoising when asked)."""
    return StageLoss(
        model, alignment_weight=cfg.loss.alignment_weight, alignment=cfg.loss.alignment,
        denoising_weight=cfg.loss.denoising_weight, snr_gamma=cfg.loss.snr_gamma,
        pack=cfg.train.pack_sequences, pack_length=cfg.train.pack_length,
    )


def train(cfg: DictConfig) -> dict:
    return train_stage(cfg, STAGE, dataset_for=lambda model: dataset_for(cfg, model),
                       loss_for=lambda model: loss_for(cfg, model))


def main(cfg: DictConfig) -> None:
    train(cfg)
