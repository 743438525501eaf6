"""A resumable, endless stream of batches, each process reading its own shard.

Each epoch's order is a permutation seeded by (seed, epoch), the same on every process; process ``rank``
of ``world`` takes every world-th index, so shards are disjoint and equally long (the tail is padded by
wrapping around). Epochs follow one another in one index stream, read by one DataLoader whose workers
live for the whole run. ``position`` (samples of the stream consumed) is all a checkpoint needs: a
resumed stream continues with the same batch, in the same order, as one that never stopped. A dataset whose
samples draw random numbers (augmentation) gets ``seeded_samples=True``: each sample then draws from a stream of
its own, seeded by its place in the run, so a resumed run draws what an uninterrupted one draws whatever
worker reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nextmm.data.dataset import Batch, collate


class ShardStream(Sampler[int]):
    """This process's indices, epoch after epoch without end, from the ``skip``-th on."""

    def __init__(self, size: int, *, seed: int, rank: int, world: int, shuffle: bool, skip: int = 0):
        if size < world:
            raise ValueError(f"{size} samples cannot be shared by {world} processes")
        self.size, self.seed, self.rank, self.world, self.shuffle, self.skip = size, seed, rank, world, shuffle, skip
        self.shard_size = -(-size // world)

    def epoch(self, epoch: int) -> list[int]:
        """The shard of one epoch."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        padded = order + order[: self.shard_size * self.world - self.size]
        return padded[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        epoch, skip = divmod(self.skip, self.shard_size)
        while True:
            yield from self.epoch(epoch)[skip:]
            epoch, skip = epoch + 1, 0


class NumberedShardStream(ShardStream):
    """ShardStream's indices, each with the sample's number in this process's stream: (number, index)."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return enumerate(super().__iter__(), start=self.skip)


class SeededSamples(Dataset):
    """``dataset[index]`` computed under torch's global RNG seeded by (seed, rank, number): a sample's random
    draws depend on its place in the run alone, not on which worker reads it or when. The caller's RNG state is
    left as it was."""

    def __init__(self, dataset: Dataset, seed: int, rank: int):
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        number, index = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.rank, number)) % 2**63)  # ints hash alike in every process
            return self.dataset[index]


class BatchStream:
    """Endless batches of ``batch_size`` stream positions (fewer samples when some were bad)."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        num_workers: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
        position: Mapping[str, int] | None = None,
        collate_fn: Callable = collate,
        seeded_samples: bool = False,
    ):
        self.batch_size = batch_size
        self.consumed = int(position["samples"]) if position else 0
        kind = NumberedShardStream if seeded_samples else ShardStream
        self.sampler = kind(len(dataset), seed=seed, rank=rank, world=world, shuffle=shuffle, skip=self.consumed)
        self.epoch_size = self.sampler.shard_size
        self.loader = DataLoader(
            SeededSamples(dataset, seed, rank) if seeded_samples else dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            collate_fn=collate_fn,
            # its own generator: starting the workers must not draw from the global RNG, which a resumed
            # run restores exactly (dropout, noise)
            generator=torch.Generator().manual_seed(seed),
        )
        self._batches: Iterator[Batch] | None = None

    @property
    def position(self) -> dict[str, int]:
        return {"samples": self.consumed}

    def state_dict(self) -> dict[str, int]:
        return self.position

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from ``state``'s position: only before the first batch is read."""
        if self._batches is not None:
            raise RuntimeError("a BatchStream's position can only be set before its first batch")
        self.consumed = self.sampler.skip = int(state["samples"])

    @property
    def epoch(self) -> float:
        return self.consumed / self.epoch_size

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Batch:
        if self._batches is None:
            self._batches = iter(self.loader)
        batch = next(self._batches)
        self.consumed += self.batch_size
        return batch
