"""Target conventions shared by every DataModule, and targets derived from others.

Batch formats by target kind (what tasks, metrics and augmentation rely on):

| kind             | tensor per batch  | dtype   | invalid / ignored              |
|------------------|-------------------|---------|--------------------------------|
| `segmentation`   | B x H x W         | int64   | `ignore_index` (255)           |
| `classification` | B                 | int64   |                                |
| `multilabel`     | B x C             | float32 | (whole sample via has_target)  |
| `depth`          | B x 1 x H x W     | float32 | 0 (metres otherwise)           |
| `normals`        | B x 3 x H x W     | float32 | all-zero vector (unit otherwise)|
| `boundary`       | B x 1 x H x W     | float32 | 255 (else 0 / 1)               |

Normals are in the camera frame of the source (for synthetic scenes: x right, y down, z away
from the camera, the OpenCV convention; a normal facing the camera has z < 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = 255
DENSE_KINDS = ("segmentation", "depth", "normals", "boundary")


def semantic_boundaries(labels: Tensor, width: int = 1, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixels whose `width`-neighbourhood holds another class: B x H x W long -> B x 1 x H x W.

    Returns 1 on boundaries, 0 elsewhere and `ignore_index` on ignored pixels; ignored
    neighbours are not compared with. Used for `boundary` targets of data
    without boundary files (NYUv2, Cityscapes, CT).
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be B x H x W, got shape {tuple(labels.shape)}")
    x = labels.unsqueeze(1).float()
    valid = labels.unsqueeze(1) != ignore_index
    big = float(torch.iinfo(torch.int32).max)
    k = 2 * width + 1
    # max and min of valid labels in each window; a boundary where they differ
    high = F.max_pool2d(torch.where(valid, x, -big), k, stride=1, padding=width)
    low = -F.max_pool2d(torch.where(valid, -x, -big), k, stride=1, padding=width)
    out = ((high != low) & valid).float()
    return torch.where(valid, out, torch.full_like(out, float(ignore_index)))
