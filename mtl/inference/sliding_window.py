"""Predict images of any size with a model trained on fixed-size slices.

An image no larger than the training patch is padded to it the way training padded its
slices (centred, with each channel's minimum: air for CT) and predicted in one forward pass.
A larger one is covered by overlapping patch-sized tiles (nnU-Net's scheme: a step of half a
patch, tiles spread evenly so the last one ends at the border) whose dense outputs (logits)
are averaged with a Gaussian weight centred on each tile, so a pixel's prediction leans on the
tiles that see it with most context and tile seams vanish.

Image-level outputs (classification) of a large image come by default from one forward pass
over the whole image (`image_level="whole"`): the pooled head then sees every lesion on the
slice, as it saw the whole slice in training, whereas averaging tile logits (`"tiles"`) lets
the many tiles without the lesion outvote the one that shows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Forward = Callable[[Tensor], dict[str, Tensor]]
IMAGE_LEVEL = ("whole", "tiles")


@dataclass(frozen=True)
class WindowOutput:
    """`dense`: task -> N x K x H x W logits at the input's size; `image`: task -> N x K
    logits; `num_tiles`: tiles per image (1 = no sliding window was needed)."""

    dense: dict[str, Tensor]
    image: dict[str, Tensor]
    num_tiles: int


def gaussian_weights(patch: tuple[int, int], sigma_scale: float = 0.125) -> Tensor:
    """H x W weights, 1 at the centre, std `sigma_scale` x the patch size per axis, floored
    at the smallest positive value so border pixels still count (nnU-Net: sigma = 1/8)."""
    axes = []
    for size in patch:
        coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        sigma = max(size * sigma_scale, 1e-6)
        axes.append(torch.exp(-0.5 * (coords / sigma) ** 2))
    weights = axes[0][:, None] * axes[1][None, :]
    weights = weights / weights.max()
    floor = weights[weights > 0].min()
    return weights.clamp_min(floor).float()


def tile_starts(size: int, patch: int, step: float = 0.5) -> list[int]:
    """Start offsets of tiles covering `size`: at most `step * patch` apart, first at 0, last
    ending at `size`."""
    if size <= patch:
        return [0]
    count = math.ceil((size - patch) / (patch * step)) + 1
    stride = (size - patch) / (count - 1)
    return [round(i * stride) for i in range(count)]


def pad_to_patch(images: Tensor, patch: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
    """Centre-pad N x C x H x W to at least `patch`, each image's channels with their own
    minimum (as training's `fit_to_size`); returns the padded images and the (top, left)
    offset of the original."""
    height, width = images.shape[-2:]
    pad_h, pad_w = max(0, patch[0] - height), max(0, patch[1] - width)
    if pad_h == 0 and pad_w == 0:
        return images, (0, 0)
    top, left = pad_h // 2, pad_w // 2
    lowest = images.flatten(2).amin(dim=2)[:, :, None, None]
    padded = lowest.expand(*images.shape[:2], height + pad_h, width + pad_w).clone()
    padded[..., top : top + height, left : left + width] = images
    return padded, (top, left)


def predict_windows(
    forward: Forward,
    images: Tensor,
    patch: tuple[int, int],
    step: float = 0.5,
    sigma_scale: float = 0.125,
    batch_size: int = 16,
    image_level: str = "whole",
) -> WindowOutput:
    """Outputs of `forward` for N images of one size: see the module docstring."""
    if image_level not in IMAGE_LEVEL:
        raise ValueError(f"image_level must be one of {IMAGE_LEVEL}, got {image_level!r}")
    if not 0 < step <= 1:
        raise ValueError(f"the tile step must be in (0, 1] of the patch size, got {step}")
    height, width = images.shape[-2:]
    padded, (top, left) = pad_to_patch(images, patch)
    if tuple(padded.shape[-2:]) == tuple(patch):
        dense, image = _split(_batched(forward, padded, batch_size))
        return WindowOutput(_crop(dense, top, left, height, width), image, 1)

    ys = tile_starts(padded.shape[-2], patch[0], step)
    xs = tile_starts(padded.shape[-1], patch[1], step)
    tiles = [(n, y, x) for n in range(len(padded)) for y in ys for x in xs]
    weights = gaussian_weights(patch, sigma_scale).to(padded.device)
    sums: dict[str, Tensor] = {}
    tile_logits: dict[str, Tensor] = {}
    for start in range(0, len(tiles), batch_size):
        chunk = tiles[start : start + batch_size]
        crops = torch.stack([padded[n, :, y : y + patch[0], x : x + patch[1]] for n, y, x in chunk])
        dense, image = _split(forward(crops))
        for name, logits in dense.items():
            if name not in sums:
                sums[name] = padded.new_zeros((len(padded), logits.shape[1], *padded.shape[-2:]))
            for (n, y, x), tile in zip(chunk, logits, strict=True):
                sums[name][n, :, y : y + patch[0], x : x + patch[1]] += tile.float() * weights
        for name, logits in image.items():
            if name not in tile_logits:
                tile_logits[name] = padded.new_zeros((len(padded), logits.shape[1]))
            for (n, _, _), row in zip(chunk, logits, strict=True):
                tile_logits[name][n] += row.float()
    coverage = padded.new_zeros(padded.shape[-2:])
    for y in ys:
        for x in xs:
            coverage[y : y + patch[0], x : x + patch[1]] += weights
    dense = {name: total / coverage for name, total in sums.items()}
    per_image = len(ys) * len(xs)
    if image_level == "tiles":
        image = {name: total / per_image for name, total in tile_logits.items()}
    else:
        _, image = _split(_batched(forward, padded, batch_size))
    return WindowOutput(_crop(dense, top, left, height, width), image, per_image)


def _batched(forward: Forward, images: Tensor, batch_size: int) -> dict[str, Tensor]:
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, len(images), batch_size):
        for name, value in forward(images[start : start + batch_size]).items():
            parts.setdefault(name, []).append(value.float())
    return {name: torch.cat(values) for name, values in parts.items()}


def _split(outputs: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Dense outputs (N x K x H x W) apart from image-level ones (N x K)."""
    dense = {name: value for name, value in outputs.items() if value.ndim == 4}
    image = {name: value for name, value in outputs.items() if value.ndim == 2}
    return dense, image


def _crop(
    dense: dict[str, Tensor], top: int, left: int, height: int, width: int
) -> dict[str, Tensor]:
    return {k: v[..., top : top + height, left : left + width] for k, v in dense.items()}
