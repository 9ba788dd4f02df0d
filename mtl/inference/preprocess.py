"""Prepare an input's slices exactly as the training data module prepared its own.

Same functions, same order as `mtl.data.nnunet_preprocess` + `nnunet_slices`: in-plane
resampling to the run's target spacing (bilinear, `_resample`), per-case channel statistics
over the resampled volume (for z-scored channels), normalisation per channel by nnU-Net's rule
with the training fingerprint (`Normalizer`), then 2.5D stacking of neighbouring slices.
What the run used comes from the checkpoint's `InputSpec`, never from the new image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from mtl.data.input_spec import InputSpec
from mtl.data.nnunet_preprocess import _resample as resample_slices
from mtl.data.nnunet_preprocess import _target_size as target_size
from mtl.data.nnunet_slices import Normalizer
from mtl.inference.readers import InputImage

log = logging.getLogger(__name__)


class ChannelMismatchError(ValueError):
    """The input has a different number of channels than the model was trained on."""


@dataclass(frozen=True)
class CaseStats:
    """Per-channel mean/std of one resampled case (what `Normalizer` z-scores with)."""

    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]


def check_channels(image: InputImage, spec: InputSpec) -> None:
    expected = len(spec.channel_names)
    if image.num_channels == expected:
        return
    context = (
        f" (the model stacks {2 * spec.context + 1} neighbouring slices of them itself, "
        f"{spec.in_channels} input channels in all)"
        if spec.context
        else ""
    )
    fix = (
        "one file per channel, named {case}_0000, {case}_0001, ..., in one folder"
        if expected > 1
        else "a single-channel (grayscale) image"
    )
    raise ChannelMismatchError(
        f"{image.source.location} gives {image.num_channels} channel(s) but the model was "
        f"trained on {expected} per slice {list(spec.channel_names)}{context}; pass {fix}"
    )


def prepare_slices(image: InputImage, spec: InputSpec) -> np.ndarray:
    """`Z x C x H' x W'` float32: resampled to the run's spacing and normalised."""
    check_channels(image, spec)
    slices = image.slices
    if spec.target_spacing is not None:
        size = target_size(slices.shape[-2:], image.spacing, spec.target_spacing)
        slices = resample_slices(slices, size, "bilinear")
    else:
        log.info(
            "the run never resampled its slices (no physical spacing); %s is used at its "
            "own %s mm pixels", image.source.location, image.spacing,
        )  # fmt: skip
    slices = np.asarray(slices, dtype=np.float32)
    flat = slices.transpose(1, 0, 2, 3).reshape(slices.shape[1], -1).astype(np.float64)
    stats = CaseStats(
        tuple(float(m) for m in flat.mean(axis=1)), tuple(float(s) for s in flat.std(axis=1))
    )
    return Normalizer(spec.channel_names, spec.fingerprints)(slices, stats)  # type: ignore[arg-type]


def context_stack(volume: np.ndarray, indices: np.ndarray, context: int) -> np.ndarray:
    """`len(indices) x (2k+1)C x H x W`: slice z with its k neighbours per side, neighbour-
    major as training stacked them; beyond the first/last slice the edge slice repeats."""
    offsets = np.arange(-context, context + 1)
    neighbours = np.clip(indices[:, None] + offsets[None, :], 0, volume.shape[0] - 1)
    stacks = volume[neighbours]  # N x (2k+1) x C x H x W
    return stacks.reshape(len(indices), -1, *volume.shape[-2:])
