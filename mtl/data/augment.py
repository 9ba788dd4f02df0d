"""Batch augmentation that moves image and dense targets together.

Runs on whole batches after they reach the device (one `affine_grid`/`grid_sample` call for
all samples), so it costs almost nothing on a GPU and keeps data workers light. Images are
resampled bilinearly; dense targets (labels, depth, normals, boundaries) with nearest
neighbour, depth divided by the zoom and normals rotated/flipped with the content;
image-level targets are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.data.targets import DENSE_KINDS


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

    def sample(self, n: int, device: torch.device) -> dict[str, Tensor]:
        """Per-sample angle, zoom and flips (±1)."""
        spatial = torch.rand(n, device=device) < self.spatial_p
        angle = self._uniform(n, -self.rotate, self.rotate, device) * spatial
        scale = torch.where(
            spatial, self._uniform(n, *self.scale, device), torch.ones(n, device=device)
        )
        fx = torch.where(torch.rand(n, device=device) < self.hflip_p, -1.0, 1.0)
        fy = torch.where(torch.rand(n, device=device) < self.vflip_p, -1.0, 1.0)
        return {"angle": angle, "scale": scale, "fx": fx, "fy": fy}

    @staticmethod
    def affine(params: dict[str, Tensor], height: int, width: int) -> Tensor:
        """(n, 2, 3) sampling matrices in normalised coordinates for `affine_grid`.

        The rotation is rigid in pixels (normalised x and y span W and H pixels), so
        non-square images are rotated, not sheared.
        """
        cos, sin = torch.cos(params["angle"]), torch.sin(params["angle"])
        fx, fy, scale = params["fx"], params["fy"], params["scale"]
        aspect = width / height  # normalised -> pixel: x * W/2, y * H/2
        theta = torch.zeros(len(cos), 2, 3, device=cos.device)
        theta[:, 0, 0] = cos * fx / scale
        theta[:, 0, 1] = -sin * fy / scale / aspect
        theta[:, 1, 0] = sin * fx / scale * aspect
        theta[:, 1, 1] = cos * fy / scale
        return theta

    def __call__(self, batch: dict[str, Any], kinds: Mapping[str, str]) -> dict[str, Any]:
        image: Tensor = batch["image"]
        n, device = image.shape[0], image.device
        params = self.sample(n, device)
        theta = self.affine(params, *image.shape[-2:])
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
            if kind in DENSE_KINDS and key in targets:
                targets[key] = warp_target(targets[key], kind, grid, params)
        batch["targets"] = targets
        return batch


def _warp_nearest(x: Tensor, grid: Tensor) -> Tensor:
    # nearest neighbour: labels stay labels, and invalid pixels (depth 0, zero normals,
    # ignore 255) are never blended with valid ones
    return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)


def warp_target(target: Tensor, kind: str, grid: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Move a dense target with the image, and transform its values where geometry says so:
    depth / zoom (zooming in by s looks like moving s times closer, as MTAN's scale crop),
    in-plane components of normals rotated and flipped with the content."""
    if kind == "segmentation":
        return _warp_nearest(target.unsqueeze(1).float(), grid).squeeze(1).to(target.dtype)
    warped = _warp_nearest(target.float(), grid).to(target.dtype)
    if kind == "depth":
        return warped / params["scale"].view(-1, 1, 1, 1).to(warped.dtype)
    if kind == "normals":
        # content moves by (R F)^-1 = F R^T (pixel axes: x right, y down)
        cos = torch.cos(params["angle"]).view(-1, 1, 1)
        sin = torch.sin(params["angle"]).view(-1, 1, 1)
        fx, fy = params["fx"].view(-1, 1, 1), params["fy"].view(-1, 1, 1)
        nx, ny, nz = warped.unbind(1)
        out_x = fx * (cos * nx + sin * ny)
        out_y = fy * (-sin * nx + cos * ny)
        return torch.stack([out_x.to(nx.dtype), out_y.to(ny.dtype), nz], dim=1)
    return warped  # boundary: a label map stored as float
