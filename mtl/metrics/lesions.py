"""Lesion-wise detection recall: the share of ground-truth lesions the prediction finds.

Voxel Dice is dominated by large structures: missing every small lesion barely moves it.
Here each lesion counts once, whatever its size. A lesion is a connected component of one
class in one 2D slice of the ground truth (`connectivity` 1: 4-neighbours, 2: 8-neighbours);
it is *detected* when the predicted mask of the same class covers at least `min_overlap` of
its pixels (0, the default: any overlap, at least one pixel). Pixels whose target is
`ignore_index` are neither lesion nor prediction.

Counts (detected and total lesions per class) are summed over the split, so the recall is
split-level and exact under DDP (torchmetrics all-reduces the sums). A class without any
lesion in the split has no recall (NaN) and is left out of the mean. Recall alone rewards
over-segmentation; read it beside `dice_<class>`, which punishes false positives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor
from torchmetrics import Metric

from mtl.metrics.common import safe_ratio

CONNECTIVITIES = (1, 2)


def lesion_hits(
    pred: np.ndarray, truth: np.ndarray, connectivity: int, min_overlap: float
) -> tuple[int, int]:
    """(detected, total) lesions of one H x W boolean ground truth given the prediction."""
    structure = ndimage.generate_binary_structure(2, connectivity)
    components, count = ndimage.label(truth, structure=structure)
    if count == 0:
        return 0, 0
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    covered = np.bincount(components[pred], minlength=count + 1)[1:]
    detected = (covered > 0) & (covered >= min_overlap * sizes)
    return int(detected.sum()), int(count)


class LesionRecall(Metric):
    """`lesion_recall` (mean over `class_ids` with lesions) and `lesion_recall_<name>`.

    `update(pred, target)`: predicted and true class ids, both B x H x W.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        class_ids: Sequence[int],
        class_names: Sequence[str],
        min_overlap: float = 0.0,
        connectivity: int = 2,
        ignore_index: int | None = 255,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(class_ids) != len(class_names) or not class_ids:
            raise ValueError("LesionRecall needs one name per class id, and at least one class")
        self.check_options(min_overlap, connectivity)
        self.class_ids = tuple(int(c) for c in class_ids)
        self.class_names = tuple(class_names)
        self.min_overlap = float(min_overlap)
        self.connectivity = int(connectivity)
        self.ignore_index = ignore_index
        k = len(self.class_ids)
        self.add_state("detected", torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(k, dtype=torch.int64), dist_reduce_fx="sum")

    @staticmethod
    def check_options(min_overlap: float = 0.0, connectivity: int = 2) -> None:
        """Fail on options out of range (also used by the task, before any data is read)."""
        if not 0.0 <= min_overlap <= 1.0:
            raise ValueError(f"lesion min_overlap must be a share in [0, 1], got {min_overlap}")
        if connectivity not in CONNECTIVITIES:
            raise ValueError(
                f"lesion connectivity must be 1 (4-neighbours) or 2 (8-neighbours), got "
                f"{connectivity}"
            )

    @staticmethod
    def names_for(class_names: Sequence[str]) -> Mapping[str, bool]:
        """Reported names and their direction (higher is better), for `higher_is_better`."""
        return dict.fromkeys(["lesion_recall", *(f"lesion_recall_{c}" for c in class_names)], True)

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(
                f"LesionRecall expects pred and target of shape B x H x W, got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        pred_np, target_np = pred.cpu().numpy(), target.cpu().numpy()
        if self.ignore_index is not None:
            valid = target_np != self.ignore_index
            pred_np = np.where(valid, pred_np, self.ignore_index)
        counts = np.zeros((len(self.class_ids), 2), dtype=np.int64)
        for row, class_id in enumerate(self.class_ids):
            slices = zip(pred_np == class_id, target_np == class_id, strict=True)
            for pred_slice, true_slice in slices:
                counts[row] += lesion_hits(
                    pred_slice, true_slice, self.connectivity, self.min_overlap
                )
        self.detected += torch.from_numpy(counts[:, 0]).to(self.detected.device)
        self.total += torch.from_numpy(counts[:, 1]).to(self.total.device)

    def compute(self) -> dict[str, Tensor]:
        recall = safe_ratio(self.detected, self.total)
        out = {"lesion_recall": recall.nanmean()}
        out.update({f"lesion_recall_{n}": recall[i] for i, n in enumerate(self.class_names)})
        return {key: value.float() for key, value in out.items()}
