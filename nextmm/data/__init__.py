"""Training data: NExT-GPT's annotation formats, read into prompt segments with preprocessed media."""

from nextmm.data.dataset import (
    Batch,
    ConversationDataset,
    Example,
    Output,
    Skipped,
    build_dataset,
    collate,
)
from nextmm.data.loader import BatchStream

__all__ = [
    "Batch",
    "BatchStream",
    "ConversationDataset",
    "Example",
    "Output",
    "Skipped",
    "build_dataset",
    "collate",
]
