"""One nnU-Net case from its files to axial slices at the target in-plane spacing.

Steps: check the files agree (shape and affine of every channel and the mask), read them,
check the mask's values against `dataset.json`, count label voxels per slice (for
classification rules and class frequencies), sample foreground intensities (for the CT
fingerprint), then resample in-plane: images linearly, masks by nearest neighbour. The slice
axis is never resampled, so slice `z` of the output is slice `z` of the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mtl.data.nnunet_io import Header, read_header, read_volume
from mtl.data.nnunet_layout import Case, DatasetInfo, NnUNetDataError
from mtl.data.targets import IGNORE_INDEX

# slices resampled at once: bounds the float32 working memory for large volumes
RESAMPLE_CHUNK = 32


@dataclass(frozen=True)
class PreprocessedCase:
    """Arrays of one case: `image` Z x C x H x W (float32, intensities as stored), `mask`
    Z x H x W (uint8, ignore = 255) or None, voxel counts per slice and class of the original
    mask, and foreground intensity samples per channel (C x N)."""

    image: np.ndarray
    mask: np.ndarray | None
    label_counts: np.ndarray | None
    foreground: np.ndarray | None
    spacing: tuple[float, float, float]


def in_plane_spacing(header: Header) -> tuple[float, float]:
    """(row, column) spacing of an axial slice: rows run along y, columns along x."""
    return header.spacing[1], header.spacing[0]


def preprocess_case(
    case: Case,
    info: DatasetInfo,
    target_spacing: tuple[float, float],
    affine_tolerance: float,
    foreground_samples: int,
) -> PreprocessedCase:
    """Read, check and resample one case; every error names the offending file."""
    headers = [read_header(path) for path in case.images]
    reference = headers[0]
    for header in headers[1:]:
        _check_same_grid(reference, header, affine_tolerance)
    label_header = read_header(case.label) if case.label is not None else None
    if label_header is not None:
        _check_same_grid(reference, label_header, affine_tolerance)

    image = _read_channels(case, info)  # X x Y x Z x C
    mask = counts = foreground = None
    if case.label is not None:
        labels = read_volume(case.label, integer=True)
        mask = _check_labels(case.label, labels, info)
        counts = _slice_counts(mask, len(info.class_names))
        foreground = _foreground(case.name, image, mask, foreground_samples)

    # to slices: Z x C x H x W with rows along y and columns along x
    slices = np.ascontiguousarray(image.transpose(2, 3, 1, 0))
    size = _target_size(slices.shape[-2:], in_plane_spacing(reference), target_spacing)
    slices = _resample(slices, size, "bilinear")
    masks = None
    if mask is not None:
        masks = _resample(np.ascontiguousarray(mask.transpose(2, 1, 0))[:, None], size, "nearest")
        masks = masks[:, 0].astype(np.uint8)
    return PreprocessedCase(slices, masks, counts, foreground, reference.spacing)


# -- checks ----------------------------------------------------------------------------------
def _check_same_grid(reference: Header, other: Header, tolerance: float) -> None:
    if reference.shape != other.shape:
        raise NnUNetDataError(
            f"{other.path} has shape {other.stored_shape} but {reference.path} has "
            f"{reference.stored_shape}; a case's images and mask must share one voxel grid: "
            f"resample or re-export the mismatching file",
            other.path,
        )
    if not np.allclose(reference.affine, other.affine, atol=tolerance, rtol=0):
        raise NnUNetDataError(
            f"the affine of {other.path} differs from that of {reference.path} by up to "
            f"{np.abs(reference.affine - other.affine).max():.3g} mm (tolerance "
            f"data.affine_tolerance={tolerance:g}); image and mask must lie on the same grid: "
            f"re-export the mask with the image's geometry (or raise the tolerance if the "
            f"difference is rounding)",
            other.path,
        )


def _read_channels(case: Case, info: DatasetInfo) -> np.ndarray:
    channels = []
    for path in case.images:
        data = read_volume(path)
        channels.extend([data] if data.ndim == 3 else [data[..., i] for i in range(data.shape[3])])
    if len(channels) != info.num_channels:
        raise NnUNetDataError(
            f"{case.images[0]} (case {case.name!r}) gives {len(channels)} channel(s) but "
            f"{info.path} declares {info.num_channels} {list(info.channel_names)}; fix "
            f"channel_names or the case's files",
            case.images[0],
        )
    return np.stack(channels, axis=-1)


def _check_labels(path: Path, labels: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """Class ids as uint8 with the `ignore` label mapped to IGNORE_INDEX."""
    allowed = set(range(len(info.class_names)))
    if info.ignore_id is not None:
        allowed.add(info.ignore_id)
    values = np.unique(labels)
    bad = [int(v) for v in values if int(v) not in allowed]
    if bad:
        declared = dict(enumerate(info.class_names))
        raise NnUNetDataError(
            f"{path} holds label values {bad[:10]} that {info.path} does not declare (labels: "
            f"{declared}{'' if info.ignore_id is None else f', ignore: {info.ignore_id}'}); "
            f"fix the mask or add the labels to dataset.json",
            path,
        )
    out = labels.astype(np.uint8)
    if info.ignore_id is not None:
        out[labels == info.ignore_id] = IGNORE_INDEX
    return out


# -- statistics ------------------------------------------------------------------------------
def _slice_counts(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Voxels of each class per axial slice (Z x classes); ignored voxels are not counted."""
    counts = np.zeros((mask.shape[2], num_classes), dtype=np.int64)
    for z in range(mask.shape[2]):
        values = mask[:, :, z].ravel()
        counts[z] = np.bincount(values[values != IGNORE_INDEX], minlength=num_classes)
    return counts


def _foreground(name: str, image: np.ndarray, mask: np.ndarray, limit: int) -> np.ndarray:
    """Intensities of up to `limit` foreground voxels per channel (C x N), the same voxels for
    every channel, chosen by a generator seeded with the case name (reproducible)."""
    where = np.flatnonzero((mask > 0) & (mask != IGNORE_INDEX))
    if where.size > limit:
        seed = int.from_bytes(hashlib.sha1(name.encode()).digest()[:8], "little")
        where = np.sort(np.random.default_rng(seed).choice(where, limit, replace=False))
    flat = image.reshape(-1, image.shape[-1])
    return np.ascontiguousarray(flat[where].T, dtype=np.float32)


# -- resampling ------------------------------------------------------------------------------
def _target_size(
    size: tuple[int, int], spacing: tuple[float, float], target: tuple[float, float]
) -> tuple[int, int]:
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(size, spacing, target, strict=True))


def _resample(array: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Z x C x H x W to Z x C x size, slice by slice: `bilinear` for images, `nearest` (exact
    pixel centres) for masks, so masks keep only the label values they had."""
    if tuple(array.shape[-2:]) == tuple(size):
        return array.astype(np.float32 if mode == "bilinear" else array.dtype, copy=False)
    out = np.empty((*array.shape[:2], *size), dtype=np.float32)
    for start in range(0, array.shape[0], RESAMPLE_CHUNK):
        chunk = torch.from_numpy(np.asarray(array[start : start + RESAMPLE_CHUNK], np.float32))
        if mode == "bilinear":
            resized = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False)
        else:
            resized = F.interpolate(chunk, size=size, mode="nearest-exact")
        out[start : start + RESAMPLE_CHUNK] = resized.numpy()
    return out
