"""What every multi-task DataModule provides beyond Lightning's interface."""

from __future__ import annotations

from typing import Any

import lightning as L

from mtl.data.augment import BatchAugment
from mtl.tasks import TargetSpec


class MultiTaskDataModule(L.LightningDataModule):
    """Batches are `{"image": BxCxHxW, "targets": {name: tensor}, "has_target": {name: B bool}}`.

    Subclasses set `in_channels` and `target_specs` (what each target is: kind, classes), which
    the tasks are checked against before training starts.
    """

    in_channels: int = 1
    target_specs: dict[str, TargetSpec]

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
