"""Data modules (one per dataset), normalisation and augmentation."""

from mtl.data.augment import BatchAugment
from mtl.data.base import MultiTaskDataModule

__all__ = ["BatchAugment", "MultiTaskDataModule"]
