"""Synthetic indoor scenes: `seg`, `depth`, `normals`, `boundary` and `objects` per image.

Sample `i` of the pool is `generate_scene(seed, i)`; a seeded permutation of the pool assigns
indices to train/val/test, so splits are disjoint and fixed by `seed`. The pool is rendered
once at setup and held in memory compactly (uint8 image, labels and boundary, float16 depth,
int8 normals: ~120 kB per 96x128 scene), so epochs cost no rendering time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mtl.data.augment import BatchAugment
from mtl.data.generated import GeneratedDataModule
from mtl.data.sample_metadata import MetadataError, check_target, mask_pixel_counts
from mtl.data.scene_render import OBJECT_CLASSES, SEG_CLASSES, SceneConfig, generate_scene
from mtl.data.targets import IGNORE_INDEX, semantic_boundaries
from mtl.tasks import TargetSpec

log = logging.getLogger(__name__)
NORMALIZATIONS = ("train", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMAL_SCALE = 127  # int8 storage of unit normals (angular error < 0.5 degrees)
BOUNDARY_CHUNK = 256  # scenes per call when deriving boundaries from labels


class SceneArrays:
    """A split held in memory: photos, targets and the pool indices they came from."""

    def __init__(
        self, seed: int, indices: np.ndarray, config: SceneConfig, boundary_width: int
    ) -> None:
        n, h, w = len(indices), config.image_height, config.image_width
        self.indices = indices
        self.images = np.empty((n, 3, h, w), np.uint8)
        self.labels = np.empty((n, h, w), np.uint8)
        self.depth = np.empty((n, h, w), np.float16)
        self.normals = np.empty((n, 3, h, w), np.int8)
        self.objects = np.empty((n, len(OBJECT_CLASSES)), bool)
        for row, index in enumerate(indices):
            scene = generate_scene(seed, int(index), config)
            self.images[row] = scene.image.transpose(2, 0, 1)
            self.labels[row] = scene.labels
            self.depth[row] = scene.depth
            self.normals[row] = np.rint(scene.normals.transpose(2, 0, 1) * NORMAL_SCALE)
            self.objects[row] = scene.objects
        self.boundary = np.empty((n, h, w), np.uint8)
        for start in range(0, n, BOUNDARY_CHUNK):
            labels = torch.from_numpy(self.labels[start : start + BOUNDARY_CHUNK].astype(np.int64))
            edges = semantic_boundaries(labels, boundary_width)[:, 0]
            self.boundary[start : start + BOUNDARY_CHUNK] = edges.to(torch.uint8).numpy()

    def __len__(self) -> int:
        return len(self.indices)

    @cached_property
    def pixel_counts(self) -> np.ndarray:
        """(N, classes) pixels of each SEG_CLASSES id per scene, counted once on first use."""
        return mask_pixel_counts(self.labels, len(SEG_CLASSES))

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the images in [0, 1]."""
        flat = self.images.transpose(1, 0, 2, 3).reshape(3, -1)
        mean = flat.mean(axis=1, dtype=np.float64) / 255
        sq = np.einsum("ij,ij->i", flat, flat, dtype=np.float64) / flat.shape[1] / 255**2
        std = np.sqrt(np.maximum(sq - mean**2, 1e-12))
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)


class SceneDataset(Dataset):
    """Normalised photos and float targets as the batch dictionary the module expects; reports
    each scene's mask classes from memory (`mtl.data.sample_metadata`)."""

    def __init__(self, arrays: SceneArrays, mean: Sequence[float], std: Sequence[float]) -> None:
        self.arrays = arrays
        self.scale = (1.0 / (255.0 * np.asarray(std, np.float32)))[:, None, None]
        self.shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32))[:, None, None]

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int) -> dict[str, Any]:
        a = self.arrays
        image = a.images[i].astype(np.float32) * self.scale - self.shift
        normals = a.normals[i].astype(np.float32)
        normals /= np.sqrt((normals * normals).sum(axis=0, keepdims=True))
        targets = {
            "seg": torch.from_numpy(a.labels[i].astype(np.int64)),
            "depth": torch.from_numpy(a.depth[i].astype(np.float32)).unsqueeze(0),
            "normals": torch.from_numpy(normals),
            "boundary": torch.from_numpy(a.boundary[i].astype(np.float32)).unsqueeze(0),
            "objects": torch.from_numpy(a.objects[i].astype(np.float32)),
        }
        return {
            "image": torch.from_numpy(image),
            "targets": targets,
            "has_target": dict.fromkeys(targets, True),
            "index": int(a.indices[i]),
        }

    def class_labels(self, target: str) -> np.ndarray:
        raise MetadataError(
            f"{type(self).__name__} has no classification target ('{target}' asked); its "
            f"image-level target `objects` is multi-label"
        )

    def class_pixel_counts(self, target: str) -> np.ndarray:
        check_target(["seg"], target, type(self).__name__, "segmentation")
        return self.arrays.pixel_counts


class SyntheticScenesDataModule(GeneratedDataModule):
    """`data=scenes`: ray-cast rooms with objects, NYUv2-style dense targets plus `objects`.

    `seed` fixes the data (pool and split) independently of the training seed, so a sweep over
    training seeds keeps the data fixed. `normalize`: `train` z-scores each channel with the
    training split's mean/std (computed once, saved in checkpoints), `imagenet` uses ImageNet's
    constants (for pretrained encoders).
    """

    in_channels = 3
    split_salt = 0x5CE7E
    arrays: dict[str, SceneArrays]

    def __init__(
        self,
        num_train: int = 1600,
        num_val: int = 200,
        num_test: int = 400,
        seed: int = 0,
        scene: Mapping[str, Any] | None = None,
        normalize: str = "train",
        boundary_width: int = 1,
        augment: BatchAugment | None = None,
        **loader: Any,
    ) -> None:
        super().__init__(num_train, num_val, num_test, seed, augment, **loader)
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"data.normalize must be one of {NORMALIZATIONS}, got {normalize!r} ('train': "
                "statistics of the training split, 'imagenet': for pretrained encoders)"
            )
        if int(boundary_width) < 1:
            raise ValueError(f"data.boundary_width must be >= 1 pixel, got {boundary_width}")
        self.config = SceneConfig(**dict(scene or {}))
        self.normalize = normalize
        self.boundary_width = int(boundary_width)
        self.target_specs = {
            "seg": TargetSpec(
                "segmentation", len(SEG_CLASSES), SEG_CLASSES, ignore_index=IGNORE_INDEX
            ),
            "depth": TargetSpec("depth"),
            "normals": TargetSpec("normals"),
            "boundary": TargetSpec("boundary", ignore_index=IGNORE_INDEX),
            "objects": TargetSpec("multilabel", len(OBJECT_CLASSES), OBJECT_CLASSES),
        }
        self.image_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        if normalize == "imagenet":
            self.image_stats = (IMAGENET_MEAN, IMAGENET_STD)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.config.image_height, self.config.image_width)

    # -- generation and normalisation (mtl.data.generated) -----------------------------------
    def generate(self, indices: np.ndarray) -> SceneArrays:
        return SceneArrays(self.seed, indices, self.config, self.boundary_width)

    @property
    def normalization_ready(self) -> bool:
        return self.image_stats is not None

    def fit_normalization(self) -> None:
        self.image_stats = self.arrays["train"].channel_stats()
        log.info(
            "scene image mean/std from %d training images: %s",
            len(self.arrays["train"]),
            self.image_stats,
        )

    def make_dataset(self, arrays: SceneArrays) -> SceneDataset:
        assert self.image_stats is not None
        return SceneDataset(arrays, *self.image_stats)

    # -- checkpointed state: the normalisation used in training ------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.image_stats is not None:
            state.update(mean=list(self.image_stats[0]), std=list(self.image_stats[1]))
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("mean") and state_dict.get("std"):
            self.image_stats = (tuple(state_dict["mean"]), tuple(state_dict["std"]))
