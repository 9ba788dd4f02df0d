"""Synthetic CT: deterministic 2D axial slices with organ/lesion masks and a slice class.

Sample `i` of the whole pool is `generate_slice(seed, i)`; a seeded permutation of the pool
assigns indices to train/val/test, so splits are disjoint and fixed by `seed`. The pool is
generated once at setup and kept in memory (int16 HU + uint8 masks: ~35 kB per 128x128 slice),
so epochs cost no generation time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mtl.data.augment import BatchAugment
from mtl.data.ct_phantom import CLS_CLASSES, SEG_CLASSES, PhantomConfig, generate_slice
from mtl.data.generated import GeneratedDataModule
from mtl.data.input_spec import InputSpec
from mtl.data.normalization import CTFingerprint
from mtl.data.sample_metadata import check_target, mask_pixel_counts
from mtl.tasks import TargetSpec

log = logging.getLogger(__name__)


class CTSliceArrays:
    """A split held in memory: HU images, masks, labels and the pool indices they came from."""

    def __init__(self, seed: int, indices: np.ndarray, config: PhantomConfig) -> None:
        size = config.image_size
        self.indices = indices
        self.images = np.empty((len(indices), size, size), dtype=np.int16)
        self.masks = np.empty((len(indices), size, size), dtype=np.uint8)
        self.labels = np.empty(len(indices), dtype=np.int64)

        for row, index in enumerate(indices):
            sample = generate_slice(seed, int(index), config)
            self.images[row] = np.clip(np.rint(sample.image), -32768, 32767)
            self.masks[row] = sample.mask
            self.labels[row] = sample.label

    def __len__(self) -> int:
        return len(self.indices)

    @cached_property
    def pixel_counts(self) -> np.ndarray:
        """(N, classes) pixels of each SEG_CLASSES id per slice, counted once on first use."""
        return mask_pixel_counts(self.masks, len(SEG_CLASSES))


class CTSliceDataset(Dataset):
    """Normalised slices as the batch dictionary the module expects; reports each slice's
    lesion class and mask classes from memory (`mtl.data.sample_metadata`)."""

    def __init__(self, arrays: CTSliceArrays, fingerprint: CTFingerprint) -> None:
        self.arrays = arrays
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.fingerprint.normalize(self.arrays.images[i].astype(np.float32))
        return {
            "image": torch.from_numpy(image).unsqueeze(0),
            "targets": {
                "seg": torch.from_numpy(self.arrays.masks[i].astype(np.int64)),
                "cls": torch.tensor(self.arrays.labels[i]),
            },
            "has_target": {"seg": True, "cls": True},
            "index": int(self.arrays.indices[i]),
        }

    def class_labels(self, target: str) -> np.ndarray:
        check_target(["cls"], target, type(self).__name__, "classification")
        return self.arrays.labels

    def class_pixel_counts(self, target: str) -> np.ndarray:
        check_target(["seg"], target, type(self).__name__, "segmentation")
        return self.arrays.pixel_counts


class SyntheticCTDataModule(GeneratedDataModule):
    """`data=ct`: synthetic abdominal CT with `seg` (organs + lesion) and `cls` (lesion class).

    `seed` fixes the data (pool and split) independently of the training seed, so a sweep over
    training seeds keeps the data fixed.
    """

    in_channels = 1
    split_salt = 0x5EED
    arrays: dict[str, CTSliceArrays]

    def __init__(
        self,
        num_train: int = 2000,
        num_val: int = 300,
        num_test: int = 500,
        seed: int = 0,
        phantom: Mapping[str, Any] | None = None,
        percentiles: tuple[float, float] = (0.5, 99.5),
        cache_dir: str | None = None,
        augment: BatchAugment | None = None,
        **loader: Any,
    ) -> None:
        super().__init__(num_train, num_val, num_test, seed, augment, **loader)
        self.config = PhantomConfig(**dict(phantom or {}))
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.target_specs = {
            "seg": TargetSpec("segmentation", len(SEG_CLASSES), SEG_CLASSES, ignore_index=255),
            # the generator's prior is the expected class share of every split
            "cls": TargetSpec(
                "classification",
                len(CLS_CLASSES),
                CLS_CLASSES,
                class_frequencies=tuple(self.config.lesion_prior),
            ),
        }
        self.fingerprint: CTFingerprint | None = None
        self._restored_fingerprint: CTFingerprint | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.config.image_size, self.config.image_size)

    def _key(self) -> str:
        blob = json.dumps(
            {
                "seed": self.seed,
                "sizes": self.sizes,
                "phantom": asdict(self.config),
                "percentiles": self.percentiles,
            },
            sort_keys=True,
            default=list,
        )
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def fingerprint_path(self) -> Path | None:
        return self.cache_dir / f"ct_fingerprint_{self._key()}.json" if self.cache_dir else None

    # -- generation and normalisation (mtl.data.generated) -----------------------------------
    def generate(self, indices: np.ndarray) -> CTSliceArrays:
        return CTSliceArrays(self.seed, indices, self.config)

    @property
    def normalization_ready(self) -> bool:
        return self.fingerprint is not None

    def fit_normalization(self) -> None:
        self.fingerprint = self._restored_fingerprint or self._load_or_compute_fingerprint()

    def _load_or_compute_fingerprint(self) -> CTFingerprint:
        path = self.fingerprint_path
        if path is not None and path.exists():
            return CTFingerprint.load(path)
        train = self.arrays.get("train") or CTSliceArrays(
            self.seed, self.split_indices()["train"], self.config
        )
        fingerprint = CTFingerprint.from_images(
            zip(train.images, train.masks, strict=True), self.percentiles, seed=self.seed
        )
        log.info("CT fingerprint from %d training slices: %s", len(train), fingerprint)
        if path is not None:
            fingerprint.save(path)
        return fingerprint

    def make_dataset(self, arrays: CTSliceArrays) -> CTSliceDataset:
        assert self.fingerprint is not None
        return CTSliceDataset(arrays, self.fingerprint)

    # -- checkpointed state: the normalisation used in training ------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            **super().state_dict(),
            "fingerprint": self.fingerprint.to_dict() if self.fingerprint else None,
        }
        if self.fingerprint is not None:
            state["input_spec"] = self.input_spec().to_dict()  # for predict.py
        return state

    def input_spec(self) -> InputSpec:
        """One CT channel in HU, never resampled (the phantom has no physical spacing)."""
        assert self.fingerprint is not None, "setup() first"
        size = self.config.image_size
        return InputSpec(("CT",), 0, (size, size), None, {0: self.fingerprint}, self.target_specs)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("fingerprint"):
            restored = CTFingerprint.from_dict(state_dict["fingerprint"])
            self._restored_fingerprint = restored
            self.fingerprint = restored
