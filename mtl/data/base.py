"""What every multi-task DataModule provides beyond Lightning's interface."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mtl.data.augment import BatchAugment
from mtl.data.resumable import ResumableSampler, reseed_for_batch, training_seed
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
    the tasks are checked against before training starts, and pass the loader settings
    (`**loader`: `batch_size`, `eval_batch_size`, `num_workers`, ...) through to `__init__`.
    The training loader draws with `sampling` (`conf/sampler/`, set by the builders; None =
    Lightning's shuffle).
    """

    in_channels: int = 1
    target_specs: dict[str, TargetSpec]
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
        if split == "train":
            sampler = self._train_sampler(dataset, shuffle)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pins_memory,
            persistent_workers=self.persistent_workers,
            drop_last=shuffle and len(dataset) > self.batch_size,
        )

    @property
    def pins_memory(self) -> bool:
        """`pin_memory`, or when unset: pinned when workers feed a CUDA device (page-locked
        batches copy to the GPU asynchronously; on CPU pinning is wasted work)."""
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = self.trainer
        on_cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"
        return on_cuda and self.num_workers > 0

    def _train_sampler(self, dataset: Dataset, shuffle: bool) -> DistributedSampler:
        """Order fixed by (seed, epoch), one disjoint share per DDP rank (Lightning keeps a
        `DistributedSampler` as it is and calls its `set_epoch`), resumable mid-epoch."""
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        if shuffle and self.sampling is not None:
            sampler = self.sampling.build(
                dataset, batch_size=self.batch_size, rank=rank, world_size=world
            )
        else:  # unshuffled, or no sampler configured: plain seeded permutation per epoch
            sampler = ResumableSampler(dataset, world, rank, shuffle=shuffle, seed=training_seed())
        if self._resume_point is not None:
            epoch, batches = self._resume_point
            sampler.resume_at(epoch, batches * self.batch_size)
            self._resume_point = None
        return sampler

    # -- checkpoints: where in its epoch the run was -----------------------------------------
    def state_dict(self) -> dict[str, Any]:
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return {"epoch": trainer.current_epoch, "batches_done": int(done)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "epoch" in state_dict:
            self._resume_point = (int(state_dict["epoch"]), int(state_dict["batches_done"]))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.shuffle_train)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def __init__(
        self,
        augment: BatchAugment | None = None,
        *,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        shuffle_train: bool = True,
    ) -> None:
        """The loader settings every `conf/data/*.yaml` shares, checked before any data is
        read or generated."""
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and int(eval_batch_size) < 1:
            raise ValueError(
                f"data.eval_batch_size must be >= 1 (or null: data.batch_size), "
                f"got {eval_batch_size}"
            )
        if int(num_workers) < 0:
            raise ValueError(
                f"data.num_workers must be >= 0 loader processes (0: load in the training "
                f"process), got {num_workers}"
            )
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.shuffle_train = bool(shuffle_train)
        self.augment = augment
        self._resume_point: tuple[int, int] | None = None
        # files left out with data.skip_bad: {"split", "file", "error"} (mtl.data.bad_data)
        self.bad_data: list[dict[str, str]] = []

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one training image, for FLOP counts and shape checks."""
        raise NotImplementedError(f"{type(self).__name__} does not report its input_shape")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Drop the `has_target` masks that are all True, while they are still on the host:
        a missing mask means "every sample labelled" to the losses and metrics, and testing a
        mask on the GPU (`bool(mask.all())`) would make every step wait for the GPU."""
        masks = batch.get("has_target") if isinstance(batch, dict) else None
        if masks:
            batch["has_target"] = {
                name: mask
                for name, mask in masks.items()
                if not (isinstance(mask, Tensor) and mask.device.type == "cpu" and mask.all())
            }
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is not None and trainer.training and "PL_GLOBAL_SEED" in os.environ:
            # augmentation and dropout of batch n depend on (seed, n) only: resumable exactly
            count = trainer.fit_loop.epoch_loop.batch_progress.total.completed
            reseed_for_batch(training_seed(), count, trainer.global_rank)
        if self.augment is not None and trainer is not None and trainer.training:
            kinds = {name: spec.kind for name, spec in self.target_specs.items()}
            batch = self.augment(batch, kinds)
        return batch
