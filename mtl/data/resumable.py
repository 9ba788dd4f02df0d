"""A training order that a checkpoint can resume exactly, mid-epoch included.

Two things make a resumed run repeat the uninterrupted one batch for batch:

* the order of samples is a function of (training seed, epoch) only, never of the global RNG
  (whose state depends on everything that ran before), and a resumed epoch skips the samples
  its checkpoint had already trained on;
* the global RNGs (augmentation, dropout) are reseeded before every training batch from
  (training seed, batch count, rank), so no RNG state has to be saved at all.

The sampler subclasses `DistributedSampler`, so Lightning uses it as it is under DDP (each
rank a disjoint share of one permutation) instead of wrapping it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def training_seed() -> int:
    """The run's seed (`seed_everything` exports it); 0 when the run is unseeded."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class SkipsOnResume:
    """For an epoch-seeded sampler: `resume_at(epoch, samples)` makes the next iteration of
    `epoch` start after this rank's first `samples` indices (those its checkpoint trained on).
    """

    epoch: int
    _skip: tuple[int, int] | None = None

    def resume_at(self, epoch: int, samples: int) -> None:
        self._skip = (int(epoch), int(samples)) if samples > 0 else None

    def _after_resume(self, indices: list[int]) -> list[int]:
        if self._skip is not None and self._skip[0] == self.epoch:
            indices = indices[self._skip[1] :]
            self._skip = None
        return indices


class ResumableSampler(SkipsOnResume, DistributedSampler):
    """`DistributedSampler` (permutation seeded by seed + epoch) that skips on resume; rank
    and world size are explicit, so it needs no process group."""

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas, rank, shuffle=shuffle, seed=seed)

    def __iter__(self) -> Iterator[int]:
        return iter(self._after_resume(list(super().__iter__())))


def batch_seed(seed: int, batch_count: int, rank: int = 0) -> int:
    """A 63-bit seed for training batch `batch_count` of DDP rank `rank` in a run seeded with
    `seed` (ranks differ, so their augmentations and dropout masks are independent)."""
    words = np.random.SeedSequence([int(seed), int(batch_count), int(rank)]).generate_state(2)
    return (int(words[0]) << 31) ^ int(words[1])


def reseed_for_batch(seed: int, batch_count: int, rank: int = 0) -> None:
    """Seed torch (all devices), NumPy and `random` for one training batch."""
    value = batch_seed(seed, batch_count, rank)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)
