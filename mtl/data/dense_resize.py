"""Resizing one sample's image and dense targets without corrupting the targets.

Images are resampled bilinearly (antialiased when shrinking). Label maps use nearest neighbour
(ids are never blended). Normals are averaged over each output pixel's cell (`area`) and
renormalised: all-zero (invalid) normals add nothing to the direction, and a cell with no valid
normal stays zero. Depth has 0 = invalid, which a plain bilinear resize would average into
valid depths near holes, so depth is resized either with nearest neighbour (`nearest`: each
output pixel is one input pixel, as the MTAN/LibMTL augmentation does; no flying pixels at
depth edges) or as the average of the valid pixels in each output cell (`masked`: smoother when
shrinking; a cell with no valid pixel stays 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

DEPTH_MODES = ("nearest", "masked")
# normals shorter than this after averaging (no valid normal in the cell) stay invalid (0)
MIN_NORMAL_NORM = 1e-6


def _area(x: Tensor, size: Sequence[int]) -> Tensor:
    """C x H x W -> C x h x w, the mean over each output pixel's cell of input pixels."""
    return F.adaptive_avg_pool2d(x[None], tuple(size))[0]


def _nearest(x: Tensor, size: Sequence[int]) -> Tensor:
    # nearest-exact samples pixel centres, aligned with the bilinear image resize
    return F.interpolate(x[None], size=tuple(size), mode="nearest-exact")[0]


def resize_image(image: Tensor, size: Sequence[int]) -> Tensor:
    """C x H x W float image, bilinear; antialiased when shrinking so no pixel is skipped."""
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    out = F.interpolate(
        image[None], size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink
    )
    return out[0]


def resize_labels(labels: Tensor, size: Sequence[int]) -> Tensor:
    """H x W integer label map, nearest neighbour (keeps the dtype and the ignore value)."""
    return _nearest(labels[None].float(), size)[0].to(labels.dtype)


def resize_depth(depth: Tensor, size: Sequence[int], mode: str = "nearest") -> Tensor:
    """1 x H x W depth with 0 = invalid; valid and invalid pixels are never blended."""
    if mode == "nearest":
        return _nearest(depth, size)
    if mode == "masked":
        valid = (depth > 0).to(depth.dtype)
        weight = _area(valid, size)
        total = _area(depth * valid, size)
        # total / weight: the mean of the valid depths in each cell
        return torch.where(weight > 0, total / weight.clamp_min(torch.finfo(depth.dtype).tiny), 0)
    raise ValueError(f"depth resize mode must be one of {DEPTH_MODES}, got {mode!r}")


def resize_normals(normals: Tensor, size: Sequence[int]) -> Tensor:
    """3 x H x W normals, cell average then back to unit length; all-zero (invalid) stays zero."""
    out = _area(normals, size)
    norm = out.norm(dim=0, keepdim=True)
    return torch.where(norm > MIN_NORMAL_NORM, out / norm.clamp_min(MIN_NORMAL_NORM), 0)
