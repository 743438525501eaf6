"""Projectors: ImageBind space -> LLM embeddings (input side) and LLM states -> decoder conditioning.

Only these and the LoRA adapter learn in NExT-GPT; both encoders and decoders stay frozen.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn


class InputProjector(nn.Module):
    """Maps one ImageBind vector to one LLM input token: (B, D_enc) -> (B, 1, H).

    ``kind="linear"`` is NExT-GPT's ``llama_proj``; ``kind="mlp"`` adds a hidden GELU layer.
    """

    def __init__(self, in_dim: int, out_dim: int, kind: str = "linear"):
        super().__init__()
        if kind == "linear":
            self.proj = nn.Linear(in_dim, out_dim)
        elif kind == "mlp":
            self.proj = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        else:
            raise ValueError(f"unknown input projector kind {kind!r}: use 'linear' or 'mlp'")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features).unsqueeze(1)  # (B, 1, H)


class OutputProjector(nn.Module):
    """Signal-token states -> a decoder's conditioning, through a transformer with learnable queries.

    The encoder reads the signal tokens' last-layer hidden states plus their input embeddings; the
    decoder turns ``num_queries`` learnable queries into the conditioning sequence.
    (B, S, H) -> (B, *conditioning_shape), e.g. (B, 77, 768) for Stable Diffusion or (B, 512) for AudioLDM.
    """

    def __init__(
        self,
        llm_dim: int,
        conditioning_shape: tuple[int, ...],
        *,
        width: int = 512,
        heads: int = 4,
        encoder_layers: int = 4,
        decoder_layers: int = 4,
        feedforward: int = 2048,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.conditioning_shape = tuple(conditioning_shape)
        num_queries = self.conditioning_shape[0] if len(self.conditioning_shape) == 2 else 1
        self.fc = nn.Linear(llm_dim, width)
        with warnings.catch_warnings():  # pre-norm layers cannot use nested tensors; torch warns about it
            warnings.simplefilter("ignore", UserWarning)
            self.transformer = nn.Transformer(
                d_model=width,
                nhead=heads,
                num_encoder_layers=encoder_layers,
                num_decoder_layers=decoder_layers,
                dim_feedforward=feedforward,
                dropout=dropout,
                batch_first=True,
                norm_first=True,
            )
        self.queries = nn.Parameter(torch.randn(1, num_queries, width))
        self.out = nn.Linear(width, self.conditioning_shape[-1])

    def forward(self, hidden_states: torch.Tensor, input_embeds: torch.Tensor) -> torch.Tensor:
        x = self.fc(hidden_states + input_embeds)  # (B, S, W)
        queries = self.queries.expand(x.shape[0], -1, -1)  # (B, Q, W)
        x = self.out(self.transformer(x, queries))  # (B, Q, C)
        return x.reshape(x.shape[0], *self.conditioning_shape)


def build_output_projectors(
    cfg: Mapping, llm_dim: int, conditioning_shapes: Mapping[str, tuple[int, ...]]
) -> nn.ModuleDict:
    """One OutputProjector per modality, all sharing the architecture in ``cfg``."""
    arch = {key: cfg[key] for key in ("width", "heads", "encoder_layers", "decoder_layers", "feedforward", "dropout")}
    return nn.ModuleDict(
        {modality: OutputProjector(llm_dim, tuple(shape), **arch) for modality, shape in conditioning_shapes.items()}
    )
