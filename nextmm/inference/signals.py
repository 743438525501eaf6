"""Finding signal-token runs ([IMG0] [IMG1] ...) in generated or training token ids, robustly.

A modality is produced when its first signal token appears. The run continues while the next ids are
the following signal tokens in order; a run cut short is *partial* (the caller completes it), and
signal tokens out of order are ignored. Nothing here raises on odd sequences: the original asserted
and died.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SignalSpan:
    modality: str
    start: int  # position of the first signal token
    length: int  # how many of the signal tokens follow in order from ``start``
    expected: int  # how many the modality has

    @property
    def complete(self) -> bool:
        return self.length == self.expected


def find_signal_spans(ids: Sequence[int], signal_ids: Mapping[str, Sequence[int]]) -> list[SignalSpan]:
    """Every run that starts with a modality's first signal token, in order of position."""
    first = {tokens[0]: modality for modality, tokens in signal_ids.items()}
    spans = []
    for position, token in enumerate(ids):
        modality = first.get(int(token))
        if modality is None:
            continue
        expected = list(signal_ids[modality])
        length = 1
        while length < len(expected) and position + length < len(ids) and int(ids[position + length]) == expected[length]:
            length += 1
        spans.append(SignalSpan(modality, position, length, len(expected)))
    return spans


def next_signal_token(ids: Sequence[int], signal_ids: Mapping[str, Sequence[int]]) -> int | None:
    """The id that must come next if ``ids`` ends inside a partial run, else None."""
    spans = find_signal_spans(ids, signal_ids)
    if not spans:
        return None
    last = spans[-1]
    if last.start + last.length == len(ids) and not last.complete:
        return signal_ids[last.modality][last.length]
    return None
