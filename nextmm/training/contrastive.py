"""Contrastive alignment of two embedding sets: ImageBind's InfoNCE loss and retrieval R@1.

Row i of `a` and row i of `b` describe the same scene (an image and its caption, a video and its sound);
every other row of the batch is a negative. With `labels`, rows that share a label (the toyworld's
concept) are positives too, so two beach scenes in one batch are not pushed apart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class InfoNCE(nn.Module):
    """Symmetric cross-entropy over cosine similarities / temperature (CLIP, ImageBind).

    The temperature is learned as a log logit scale (CLIP's parametrisation) unless `learnable=False`;
    the scale is clamped at 100 as in CLIP, so it cannot grow without bound.
    """

    max_scale = 100.0

    def __init__(self, temperature: float = 0.07, learnable: bool = True) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)), requires_grad=learnable)

    @property
    def temperature(self) -> float:
        return 1.0 / float(self.log_scale.detach().exp().clamp(max=self.max_scale))

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """a (B, D), b (B, D) paired by row; labels (B,) or None -> scalar loss."""
        if a.ndim != 2 or a.shape != b.shape:
            raise ValueError(f"InfoNCE needs two (B, D) tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        scale = self.log_scale.exp().clamp(max=self.max_scale)
        logits = scale * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T  # (B, B)
        targets = positives(a.shape[0], labels, a.device)  # (B, B), rows sum to 1
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets.T)) / 2


def positives(batch_size: int, labels: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Target distribution (B, B): the diagonal, or uniform over the rows sharing a label."""
    if labels is None:
        return torch.eye(batch_size, device=device)
    if labels.shape != (batch_size,):
        raise ValueError(f"labels must be ({batch_size},), got {tuple(labels.shape)}")
    same = (labels[:, None] == labels[None, :]).float().to(device)  # symmetric, so targets.T == targets
    return same / same.sum(dim=1, keepdim=True)


@torch.no_grad()
def retrieval_at_1(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_labels: torch.Tensor | None = None,
    key_labels: torch.Tensor | None = None,
) -> float:
    """Share of queries (Q, D) whose most cosine-similar key (K, D) is right.

    Without labels, query i's right key is key i (Q == K); with labels, any key of the query's label.
    """
    if (query_labels is None) != (key_labels is None):
        raise ValueError("give labels for both queries and keys, or for neither")
    nearest = (F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T).argmax(dim=1)  # (Q,)
    if query_labels is None:
        if queries.shape[0] != keys.shape[0]:
            raise ValueError(f"without labels queries and keys pair by row, got {queries.shape[0]} and {keys.shape[0]}")
        return (nearest == torch.arange(queries.shape[0], device=nearest.device)).float().mean().item()
    return (key_labels.to(nearest.device)[nearest] == query_labels.to(nearest.device)).float().mean().item()
