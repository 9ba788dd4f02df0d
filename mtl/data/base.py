"""What every multi-task DataModule provides beyond Lightning's interface."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mtl.data.augment import BatchAugment
from mtl.data.sample_metadata import (
    label_frequencies,
    labels_of,
    pixel_counts_of,
    pixel_frequencies,
)
from mtl.data.samplers import SamplerConfigError, Sampling
from mtl.tasks import TargetSpec


class MultiTaskDataModule(L.LightningDataModule):
    """Batches are `{"image": BxCxHxW, "targets": {name: tensor}, "has_target": {name: B bool}}`.

    Subclasses set `in_channels` and `target_specs` (what each target is: kind, classes), which
    the tasks are checked against before training starts. The training loader draws with
    `sampling` (`conf/sampler/`, set by the builders; None = Lightning's shuffle).
    """

    in_channels: int = 1
    target_specs: dict[str, TargetSpec]
    # set by subclasses' constructors
    batch_size: int
    eval_batch_size: int
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    shuffle_train: bool = True
    sampling: Sampling | None = None

    def dataset(self, split: str) -> Dataset:
        """The `train`, `val` or `test` split as a map-style dataset of batch dictionaries."""
        raise NotImplementedError

    def set_sampling(self, sampling: Sampling | None) -> None:
        """Draw training batches with `sampling`; a rebalancing sampler needs shuffling on."""
        if sampling is not None and sampling.rebalances and not self.shuffle_train:
            raise SamplerConfigError(
                f"data.shuffle_train=false asks for a fixed training order, but {sampling} "
                f"draws at random: use sampler=none or data.shuffle_train=true"
            )
        self.sampling = sampling

    def class_frequencies(self, target: str) -> np.ndarray:
        """Share of each class of `target` in the training split: of the labelled samples
        for a classification target, of the labelled pixels for a segmentation target."""
        spec = self.target_specs[target]
        train = self.dataset("train")
        if spec.kind == "classification":
            return label_frequencies(labels_of(train, target), spec.num_classes or 0)
        if spec.kind == "segmentation":
            return pixel_frequencies(pixel_counts_of(train, target))
        raise ValueError(f"target '{target}' of kind '{spec.kind}' has no class frequencies")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        sampler = None
        trainer = self.trainer
        rank, world_size = (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)
        if split == "train" and shuffle and self.sampling is not None:
            # a DistributedSampler: Lightning keeps it under DDP and calls its set_epoch
            sampler = self.sampling.build(
                dataset, batch_size=self.batch_size, rank=rank, world_size=world_size
            )
        elif split == "train" and not shuffle and world_size > 1:
            # Lightning always shuffles a training loader it distributes; a fixed order under
            # DDP needs our own sampler (rank r takes samples r, r + N, ...)
            sampler = DistributedSampler(dataset, world_size, rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=shuffle and len(dataset) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.shuffle_train)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def __init__(self, augment: BatchAugment | None = None) -> None:
        super().__init__()
        self.augment = augment

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one training image, for FLOP counts and shape checks."""
        raise NotImplementedError(f"{type(self).__name__} does not report its input_shape")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            kinds = {name: spec.kind for name, spec in self.target_specs.items()}
            batch = self.augment(batch, kinds)
        return batch
