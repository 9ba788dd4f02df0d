"""Data modules whose samples a generator draws from (seed, index), with no files to read.

One pool of `num_train + num_val + num_test` indices is split by a permutation seeded with the
data seed, so the splits are disjoint and fixed by `seed` alone (independent of the training
seed: a sweep over training seeds keeps the data fixed). A split is generated once, when a
stage first needs it, and held in memory; normalisation statistics come from the training
split, so it is generated first wherever they are still missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from mtl.data.augment import BatchAugment
from mtl.data.base import MultiTaskDataModule

SPLITS = ("train", "val", "test")


class GeneratedDataModule(MultiTaskDataModule):
    """Subclasses set `split_salt` (a constant of the dataset, so two generators with the same
    seed split differently) and implement `generate`, `normalization_ready`,
    `fit_normalization` and `make_dataset`."""

    split_salt: int

    def __init__(
        self,
        num_train: int,
        num_val: int,
        num_test: int,
        seed: int = 0,
        augment: BatchAugment | None = None,
        **loader: Any,
    ) -> None:
        super().__init__(augment, **loader)
        for name, value in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if int(value) < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.sizes = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
        self.seed = int(seed)
        self.arrays: dict[str, Any] = {}  # split -> what `generate` returned

    # -- what a dataset defines --------------------------------------------------------------
    def generate(self, indices: np.ndarray) -> Any:
        """Draw the samples of these pool indices."""
        raise NotImplementedError

    @property
    def normalization_ready(self) -> bool:
        raise NotImplementedError

    def fit_normalization(self) -> None:
        """Set the normalisation from `self.arrays["train"]` (or a restored checkpoint's)."""
        raise NotImplementedError

    def make_dataset(self, arrays: Any) -> Dataset:
        raise NotImplementedError

    # -- splits ------------------------------------------------------------------------------
    def split_indices(self) -> dict[str, np.ndarray]:
        """Disjoint pool indices per split, a permutation fixed by the data seed."""
        total = sum(self.sizes.values())
        order = np.random.default_rng([self.seed, self.split_salt]).permutation(total)
        out, start = {}, 0
        for split in SPLITS:
            out[split] = np.sort(order[start : start + self.sizes[split]])
            start += self.sizes[split]
        return out

    # -- Lightning hooks ---------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        needed = ["train", "val", "test"] if stage in (None, "fit") else ["test"]
        if stage == "validate":
            needed = ["val"]
        if not self.normalization_ready and "train" not in needed:
            needed = ["train", *needed]
        indices = self.split_indices()
        for split in needed:
            if split not in self.arrays:
                self.arrays[split] = self.generate(indices[split])
        if not self.normalization_ready:
            self.fit_normalization()

    def dataset(self, split: str) -> Dataset:
        if split not in self.arrays or not self.normalization_ready:
            self.setup({"train": "fit", "val": "validate"}.get(split, "test"))
        return self.make_dataset(self.arrays[split])
