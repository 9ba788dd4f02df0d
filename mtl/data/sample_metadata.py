"""What class-aware samplers and class weights need to know of each training sample.

A dataset supports class imbalance handling (`conf/sampler/`, `class_weights: inverse|median`)
by implementing two cheap methods, answered from arrays already in memory or from cached
counts, never by loading images:

- `class_labels(target)`: (N,) int64, the class id of each sample for a classification
  target, `MISSING` (-1) where a sample has no label (partial labels);
- `class_pixel_counts(target)`: (N, C) int64, the pixels of each class in each sample's mask
  for a segmentation target (a row of zeros for a sample without a mask).

The functions here check that a dataset has them and turn them into what callers use:
presence of each class per sample and class frequencies of a split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

MISSING = -1  # no class label
# rows per chunk when counting mask pixels (bounds the temporary boolean array)
COUNT_CHUNK = 256


class MetadataError(ValueError):
    """A dataset cannot report the per-sample classes a sampler or class weighting needs."""


@runtime_checkable
class SampleMetadata(Protocol):
    """A dataset that reports per-sample classes without loading its images."""

    def class_labels(self, target: str) -> np.ndarray: ...

    def class_pixel_counts(self, target: str) -> np.ndarray: ...


def _require(dataset: Any, target: str, what: str) -> SampleMetadata:
    if not isinstance(dataset, SampleMetadata):
        raise MetadataError(
            f"{type(dataset).__name__} cannot report per-sample {what} of target '{target}' "
            f"without loading every image; use sampler=none and explicit class_weights "
            f"(a list) with this data"
        )
    return dataset


def labels_of(dataset: Any, target: str) -> np.ndarray:
    """(N,) class ids of a classification target, `MISSING` where a sample has none."""
    labels = np.asarray(_require(dataset, target, "class labels").class_labels(target))
    if labels.ndim != 1:
        raise MetadataError(f"class labels of '{target}' must be 1-D, got {labels.shape}")
    return labels.astype(np.int64, copy=False)


def pixel_counts_of(dataset: Any, target: str) -> np.ndarray:
    """(N, C) pixels per class of a segmentation target."""
    counts = np.asarray(_require(dataset, target, "mask classes").class_pixel_counts(target))
    if counts.ndim != 2:
        raise MetadataError(f"pixel counts of '{target}' must be N x C, got {counts.shape}")
    return counts.astype(np.int64, copy=False)


def presence_of(dataset: Any, target: str) -> np.ndarray:
    """(N, C) bool: which classes of a segmentation target each sample contains."""
    return pixel_counts_of(dataset, target) > 0


def label_frequencies(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of each class among the labelled samples (unlabelled ones are left out)."""
    labelled = labels[labels != MISSING]
    if labelled.size == 0:
        raise MetadataError("no sample has a class label: class frequencies are undefined")
    if labelled.min() < 0 or labelled.max() >= num_classes:
        raise MetadataError(
            f"class labels must be in [0, {num_classes}) or {MISSING}, got "
            f"[{labelled.min()}, {labelled.max()}]"
        )
    return np.bincount(labelled, minlength=num_classes) / labelled.size


def pixel_frequencies(counts: np.ndarray) -> np.ndarray:
    """Share of each class among all labelled pixels of the split."""
    total = counts.sum(axis=0).astype(np.float64)
    if total.sum() == 0:
        raise MetadataError("no sample has a labelled pixel: class frequencies are undefined")
    return total / total.sum()


def mask_pixel_counts(masks: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, C) pixels of each class in N masks; values outside [0, C) (ignore) are not counted."""
    out = np.zeros((len(masks), num_classes), dtype=np.int64)
    for start in range(0, len(masks), COUNT_CHUNK):
        flat = masks[start : start + COUNT_CHUNK].reshape(min(COUNT_CHUNK, len(masks) - start), -1)
        for c in range(num_classes):
            out[start : start + len(flat), c] = (flat == c).sum(axis=1)
    return out


def check_target(reportable: Sequence[str], target: str, owner: str, kind: str) -> None:
    """Fail, naming what the dataset has, when it is asked about a target it cannot report."""
    if target not in reportable:
        raise MetadataError(
            f"{owner} has no {kind} target '{target}'; its {kind} targets: "
            f"{sorted(reportable) or 'none'}"
        )
