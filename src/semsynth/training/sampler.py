"""A resumable, optionally distributed, epoch-shuffling sampler.

The order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone, split across ranks like
``DistributedSampler`` (each rank takes every ``world_size``-th index, the tail dropped so that every rank
has the same number of full batches). ``start_batch`` skips the batches already consumed, so that a resumed
run sees exactly the samples an uninterrupted run would have seen.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, dataset_len: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        if dataset_len < batch_size * world_size:
            raise ValueError(f"the dataset has {dataset_len} samples, fewer than one global batch "
                             f"({batch_size} x {world_size} processes); lower train.batch_size")
        self.n, self.batch_size, self.seed, self.shuffle = dataset_len, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        per_rank = self.batches_per_epoch * self.batch_size
        mine = order[self.rank : per_rank * self.world_size : self.world_size]
        return iter(mine[self.start_batch * self.batch_size :])
