"""Cached nnU-Net cases served as normalised 2D (or 2.5D) axial slices.

2.5D (`context` k > 0): the input of slice z stacks slices z-k .. z+k, each with all of the
case's channels (neighbour-major: `[z-k: c0 c1 .., z-k+1: c0 c1 .., ...]`), so a model sees
`(2k + 1) * C` channels; beyond the first and last slice the edge slice is repeated.

Normalisation per channel follows the name `dataset.json` gives it (nnU-Net's rule):
`CT` -> clip to the training foreground's percentiles, z-score with its mean/std (the
fingerprint); `noNorm` -> unchanged; `rgb_to_0_1` -> divided by 255; anything else -> z-score
with the mean/std of the whole case (per image).

Slices of a batch must share one size: each is centre-cropped or centre-padded to `size`,
images padded with the slice's minimum per channel (air for CT), masks with 0 (background).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mtl.data.nnunet_cache import CaseEntry
from mtl.data.nnunet_cls import MISSING
from mtl.data.normalization import CTFingerprint
from mtl.data.sample_metadata import MetadataError, check_target
from mtl.data.targets import IGNORE_INDEX

SCHEME_CT, SCHEME_NONE, SCHEME_RGB, SCHEME_ZSCORE = "ct", "nonorm", "rgb_to_0_1", "zscore"
RGB_MAX = 255.0
# floor on a case's intensity std (a constant channel would divide by zero)
MIN_STD = 1e-8


def normalization_scheme(channel_name: str) -> str:
    """nnU-Net's mapping from a `channel_names` value to a normalisation (case-insensitive)."""
    name = channel_name.casefold()
    if name in (SCHEME_CT, SCHEME_NONE, SCHEME_RGB):
        return name
    return SCHEME_ZSCORE


def ct_channels(channel_names: Sequence[str]) -> list[int]:
    return [i for i, n in enumerate(channel_names) if normalization_scheme(n) == SCHEME_CT]


class Normalizer:
    """Normalises `... x C x H x W` slices of one case channel by channel."""

    def __init__(
        self, channel_names: Sequence[str], fingerprints: Mapping[int, CTFingerprint]
    ) -> None:
        self.schemes = [normalization_scheme(n) for n in channel_names]
        missing = [
            c for c, s in enumerate(self.schemes) if s == SCHEME_CT and c not in fingerprints
        ]
        if missing:
            raise ValueError(f"CT channels {missing} have no fingerprint")
        self.fingerprints = dict(fingerprints)

    def __call__(self, slices: np.ndarray, entry: CaseEntry) -> np.ndarray:
        out = np.empty(slices.shape, dtype=np.float32)
        for c, scheme in enumerate(self.schemes):
            x = slices[..., c, :, :]
            if scheme == SCHEME_CT:
                out[..., c, :, :] = self.fingerprints[c].normalize(x)
            elif scheme == SCHEME_NONE:
                out[..., c, :, :] = x
            elif scheme == SCHEME_RGB:
                out[..., c, :, :] = x / RGB_MAX
            else:
                std = max(entry.channel_std[c], MIN_STD)
                out[..., c, :, :] = (x - entry.channel_mean[c]) / std
        return out


def fit_to_size(
    image: np.ndarray, mask: np.ndarray | None, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Centre-crop, then centre-pad, `C x H x W` (and `H x W`) to `size`."""
    height, width = image.shape[-2:]
    top, left = max(0, (height - size[0]) // 2), max(0, (width - size[1]) // 2)
    image = image[:, top : top + size[0], left : left + size[1]]
    if mask is not None:
        mask = mask[top : top + size[0], left : left + size[1]]
    pad_h, pad_w = size[0] - image.shape[1], size[1] - image.shape[2]
    if pad_h == 0 and pad_w == 0:
        return image, mask
    top, left = pad_h // 2, pad_w // 2
    lowest = image.reshape(image.shape[0], -1).min(axis=1)
    padded = np.empty((image.shape[0], *size), dtype=image.dtype)
    padded[:] = lowest[:, None, None]
    padded[:, top : top + image.shape[1], left : left + image.shape[2]] = image
    if mask is not None:
        padded_mask = np.zeros(size, dtype=mask.dtype)
        padded_mask[top : top + mask.shape[0], left : left + mask.shape[1]] = mask
        mask = padded_mask
    return padded, mask


class NnUNetSlices(Dataset):
    """Every axial slice of `entries`, as batch items; `cls_labels[i]` holds case i's
    per-slice class labels (-1 = none) or is None when there is no `cls` target.

    Samplers learn each slice's classes without reading it (`mtl.data.sample_metadata`): the
    `cls` labels, and the voxel counts per class that preprocessing stored for each slice of
    the *original* mask (before in-plane resampling and `patch_size` cropping, so a structure
    of a few voxels may be counted on a slice where the served mask has lost it).
    """

    def __init__(
        self,
        entries: Sequence[CaseEntry],
        normalizer: Normalizer,
        size: tuple[int, int],
        context: int = 0,
        targets: Sequence[str] = ("seg",),
        cls_labels: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.entries = list(entries)
        self.normalizer = normalizer
        self.size = (int(size[0]), int(size[1]))
        self.context = int(context)
        self.targets = tuple(targets)
        self.cls_labels = list(cls_labels) if cls_labels is not None else None
        counts = [entry.num_slices for entry in self.entries]
        self.case_index = np.repeat(np.arange(len(counts)), counts)
        self.slice_index = np.concatenate([np.arange(n) for n in counts] or [np.zeros(0, int)])

    def __len__(self) -> int:
        return len(self.case_index)

    def _targets(self, name: str) -> list[str]:
        return [name] if name in self.targets else []

    def class_labels(self, target: str) -> np.ndarray:
        check_target(self._targets("cls"), target, type(self).__name__, "classification")
        if self.cls_labels is None:
            return np.full(len(self), MISSING, dtype=np.int64)
        labels = [np.asarray(c, dtype=np.int64) for c in self.cls_labels]
        return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)

    def class_pixel_counts(self, target: str) -> np.ndarray:
        check_target(self._targets("seg"), target, type(self).__name__, "segmentation")
        widths = [e.label_counts.shape[1] for e in self.entries if e.label_counts is not None]
        if not widths:
            raise MetadataError("no case of this split has a mask: no class counts to report")
        rows = [
            entry.label_counts
            if entry.label_counts is not None
            else np.zeros((entry.num_slices, widths[0]), dtype=np.int64)
            for entry in self.entries
        ]
        return np.concatenate(rows).astype(np.int64, copy=False)

    def __getitem__(self, i: int) -> dict[str, Any]:
        case, z = int(self.case_index[i]), int(self.slice_index[i])
        entry = self.entries[case]
        offsets = np.arange(-self.context, self.context + 1)
        neighbours = np.clip(z + offsets, 0, entry.num_slices - 1)
        stack = np.asarray(entry.image()[neighbours])  # (2k+1) x C x H x W
        stack = self.normalizer(stack, entry)
        image = stack.reshape(-1, *stack.shape[-2:])
        mask = np.asarray(entry.mask()[z]) if entry.has_mask and "seg" in self.targets else None
        image, mask = fit_to_size(image, mask, self.size)

        targets: dict[str, torch.Tensor] = {}
        has_target: dict[str, bool] = {}
        if "seg" in self.targets:
            has_target["seg"] = mask is not None
            if mask is None:
                targets["seg"] = torch.full(self.size, IGNORE_INDEX, dtype=torch.int64)
            else:
                targets["seg"] = torch.from_numpy(mask.astype(np.int64))
        if "cls" in self.targets:
            label = int(self.cls_labels[case][z]) if self.cls_labels is not None else MISSING
            has_target["cls"] = label != MISSING
            targets["cls"] = torch.tensor(max(label, 0), dtype=torch.int64)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "targets": targets,
            "has_target": has_target,
            "index": i,
            # where the slice comes from (the position of its case in the split, and z)
            "case_index": case,
            "slice_index": z,
        }
