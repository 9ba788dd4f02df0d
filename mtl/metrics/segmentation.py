"""Dice, IoU and pixel accuracy from one accumulated confusion matrix.

One state (a C x C confusion matrix summed over the split, all-reduced by torchmetrics under
DDP) gives every segmentation score at once, with `ignore_index` pixels left out. Scores are
*global* over the split (per class: 2TP / (2TP + FP + FN) over all pixels), as nnU-Net's
pseudo-Dice and most MTL papers report; a class absent from both ground truth and prediction
in the whole split has an undefined score (NaN) and is left out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix


def scores_from_confusion(
    confusion: Tensor, class_names: Sequence[str], include_background: bool = False
) -> dict[str, Tensor]:
    """Per-class and mean Dice/IoU plus pixel accuracy; rows = truth, columns = prediction."""
    confusion = confusion.double()
    tp = confusion.diagonal()
    fp = confusion.sum(0) - tp
    fn = confusion.sum(1) - tp
    nan = torch.tensor(float("nan"), dtype=confusion.dtype, device=confusion.device)
    dice_den = 2 * tp + fp + fn
    dice = torch.where(dice_den > 0, 2 * tp / dice_den.clamp_min(1), nan)
    iou_den = tp + fp + fn
    iou = torch.where(iou_den > 0, tp / iou_den.clamp_min(1), nan)
    first = 0 if include_background else 1
    total = confusion.sum()
    out: dict[str, Tensor] = {
        "dice": dice[first:].nanmean(),
        "miou": iou.nanmean(),  # mIoU conventionally includes background
        "pixel_acc": torch.where(total > 0, tp.sum() / total.clamp_min(1), nan),
    }
    for index, name in enumerate(class_names):
        if index >= first:
            out[f"dice_{name}"] = dice[index]
    return {key: value.float() for key, value in out.items()}


class SegmentationMetrics(MulticlassConfusionMatrix):
    """`dice` (mean over foreground classes), `dice_<class>`, `miou`, `pixel_acc`."""

    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        class_names: Sequence[str],
        ignore_index: int | None = 255,
        include_background: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(
            num_classes=len(class_names), ignore_index=ignore_index, validate_args=False, **kwargs
        )
        self.class_names = tuple(class_names)
        self.include_background = include_background

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        return scores_from_confusion(self.confmat, self.class_names, self.include_background)
