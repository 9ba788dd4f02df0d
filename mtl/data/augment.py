"""Batch augmentation that moves image and dense targets together.

Runs on whole batches after they reach the device (one `affine_grid`/`grid_sample` call for
all samples), so it costs almost nothing on a GPU and keeps data workers light. Images are
resampled bilinearly, label maps with nearest neighbour; image-level targets are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

DENSE_LABEL_KINDS = ("segmentation",)


class BatchAugment:
    """Random flips, rotation, isotropic scaling (one affine per sample) and intensity jitter.

    Intensity jitter acts on normalised images: x * s + b, s in `intensity_scale`, b in
    [-intensity_shift, intensity_shift] (units of the foreground std).
    """

    def __init__(
        self,
        hflip_p: float = 0.5,
        vflip_p: float = 0.0,
        rotate_deg: float = 15.0,
        scale: Sequence[float] = (0.9, 1.1),
        spatial_p: float = 0.5,
        intensity_scale: Sequence[float] = (0.9, 1.1),
        intensity_shift: float = 0.1,
        intensity_p: float = 0.5,
    ) -> None:
        for name, p in (
            ("hflip_p", hflip_p),
            ("vflip_p", vflip_p),
            ("spatial_p", spatial_p),
            ("intensity_p", intensity_p),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {p}")
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"augment.scale must be [low, high] with 0 < low <= high, got {scale}")
        self.hflip_p, self.vflip_p = hflip_p, vflip_p
        self.rotate = math.radians(rotate_deg)
        self.scale = (float(scale[0]), float(scale[1]))
        self.spatial_p = spatial_p
        self.intensity_scale = (float(intensity_scale[0]), float(intensity_scale[1]))
        self.intensity_shift = intensity_shift
        self.intensity_p = intensity_p

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> Tensor:
        return torch.rand(n, device=device) * (high - low) + low

    def affine(self, n: int, device: torch.device) -> Tensor:
        """(n, 2, 3) sampling matrices in normalised coordinates."""
        spatial = torch.rand(n, device=device) < self.spatial_p
        angle = self._uniform(n, -self.rotate, self.rotate, device) * spatial
        scale = torch.where(
            spatial, self._uniform(n, *self.scale, device), torch.ones(n, device=device)
        )
        fx = torch.where(torch.rand(n, device=device) < self.hflip_p, -1.0, 1.0)
        fy = torch.where(torch.rand(n, device=device) < self.vflip_p, -1.0, 1.0)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0], theta[:, 0, 1] = cos * fx, -sin * fy
        theta[:, 1, 0], theta[:, 1, 1] = sin * fx, cos * fy
        return theta

    def __call__(self, batch: dict[str, Any], kinds: Mapping[str, str]) -> dict[str, Any]:
        image: Tensor = batch["image"]
        n, device = image.shape[0], image.device
        theta = self.affine(n, device)
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        image = F.grid_sample(
            image, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        jitter = torch.rand(n, 1, 1, 1, device=device) < self.intensity_p
        s = self._uniform(n, *self.intensity_scale, device).view(n, 1, 1, 1)
        b = self._uniform(n, -self.intensity_shift, self.intensity_shift, device).view(n, 1, 1, 1)
        batch["image"] = torch.where(jitter, image * s + b, image)
        targets = dict(batch["targets"])
        for key, kind in kinds.items():
            if kind in DENSE_LABEL_KINDS and key in targets:
                labels = targets[key]
                warped = F.grid_sample(
                    labels.unsqueeze(1).float(),
                    grid,
                    mode="nearest",
                    padding_mode="border",
                    align_corners=False,
                )
                targets[key] = warped.squeeze(1).to(labels.dtype)
        batch["targets"] = targets
        return batch
