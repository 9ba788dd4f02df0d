"""One sample of an `.npy` dataset: read its files, then turn them into the batch format.

The files are channels-last numpy arrays (see `mtl.data.npy_layout`); the batch follows
`mtl.data.targets`: image 3 x H x W normalised, `seg` H x W int64 with 255 = ignore (the
files' -1), `depth` 1 x H x W (0 = invalid), `normals` 3 x H x W, `boundary` 1 x H x W derived
from the labels, `objects` C (presence of each class, a multi-label target).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtl.data.dense_resize import resize_depth, resize_image, resize_labels, resize_normals
from mtl.data.npy_layout import SplitLayout, check_values, load_array
from mtl.data.targets import IGNORE_INDEX, semantic_boundaries

# target name -> the modality folder it comes from
TARGET_SOURCES = {
    "seg": "label",
    "boundary": "label",
    "objects": "label",
    "depth": "depth",
    "normals": "normal",
}


class NpySampleReader:
    """Raw arrays of one split, read lazily per sample (memory-mapped) or all held in memory.

    Lazy reading keeps memory flat (NYUv2's training images alone are ~1 GB as float32);
    `in_memory` trades that memory for no file access per step, holding the samples `indices`
    (default all; the datamodule leaves out samples skipped as bad). Values are checked on read.
    """

    def __init__(
        self,
        layout: SplitLayout,
        modalities: Sequence[str],
        num_classes: int,
        check: bool = True,
        in_memory: bool = False,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.layout = layout
        self.modalities = tuple(modalities)
        self.num_classes = num_classes
        self.check = check
        self.cache: dict[int, dict[str, np.ndarray]] | None = None
        if in_memory:
            held = range(layout.count) if indices is None else indices
            self.cache = {int(i): {m: self._load(m, int(i)) for m in self.modalities} for i in held}

    def __len__(self) -> int:
        return self.layout.count

    def _load(self, modality: str, index: int) -> np.ndarray:
        path = self.layout.path(modality, index)
        array = np.array(load_array(path, mmap=True))  # copy out of the mapping
        if self.check:
            check_values(modality, path, array, self.num_classes)
        return array

    def read(self, index: int) -> dict[str, np.ndarray]:
        if self.cache is not None:
            return self.cache[index]
        return {m: self._load(m, index) for m in self.modalities}


class SampleConverter:
    """Raw channels-last arrays -> `{"image", "targets", "has_target"}` for the chosen targets.

    `has_target` is False where a sample carries nothing to learn from (no labelled pixel, no
    valid depth or normal), so losses skip it instead of averaging over nothing (NaN).
    `objects` counts pixels at the stored resolution, so `resize` does not change it.
    """

    def __init__(
        self,
        targets: Sequence[str],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        resize: Sequence[int] | None = None,
        depth_resize: str = "nearest",
        boundary_width: int = 1,
        objects_min_pixels: int = 1,
    ) -> None:
        self.targets = tuple(targets)
        self.num_classes = num_classes
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1)
        self.resize = tuple(resize) if resize is not None else None
        self.depth_resize = depth_resize
        self.boundary_width = boundary_width
        self.objects_min_pixels = objects_min_pixels

    def __call__(self, raw: Mapping[str, np.ndarray]) -> dict[str, Any]:
        image = _channels_first(raw["image"])
        if self.resize is not None:
            image = resize_image(image, self.resize).clamp_(0.0, 1.0)
        targets: dict[str, Tensor] = {}
        has: dict[str, bool] = {}
        if "label" in raw:
            self._label_targets(raw["label"], targets, has)
        if "depth" in self.targets:
            depth = _channels_first(raw["depth"])
            if self.resize is not None:
                depth = resize_depth(depth, self.resize, self.depth_resize)
            targets["depth"], has["depth"] = depth, bool((depth > 0).any())
        if "normals" in self.targets:
            normals = _channels_first(raw["normal"])
            if self.resize is not None:
                normals = resize_normals(normals, self.resize)
            targets["normals"], has["normals"] = normals, bool(normals.abs().sum(0).gt(0).any())
        return {
            "image": (image - self.mean) / self.std,
            "targets": targets,
            "has_target": has,
        }

    def _label_targets(
        self, label: np.ndarray, targets: dict[str, Tensor], has: dict[str, bool]
    ) -> None:
        ids = torch.from_numpy(np.asarray(label).astype(np.int64))  # -1.0 -> -1
        counts = torch.bincount(ids[ids >= 0], minlength=self.num_classes)  # stored resolution
        if self.resize is not None:
            ids = resize_labels(ids, self.resize)
        seg = torch.where(ids < 0, IGNORE_INDEX, ids)
        labelled = bool((ids >= 0).any())
        if "seg" in self.targets:
            targets["seg"], has["seg"] = seg, labelled
        if "boundary" in self.targets:
            targets["boundary"] = semantic_boundaries(seg[None], self.boundary_width)[0]
            has["boundary"] = labelled
        if "objects" in self.targets:
            targets["objects"] = (counts >= self.objects_min_pixels).float()
            has["objects"] = bool(counts.sum() > 0)


def _channels_first(array: np.ndarray) -> Tensor:
    """H x W x C array -> C x H x W float32 tensor (contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, 0), dtype=np.float32))
