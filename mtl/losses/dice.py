"""Soft Dice + cross-entropy, the nnU-Net default for segmentation.

Written here (rather than MONAI's DiceCELoss) because we need `ignore_index` in both terms
and per-class CE weights; the Dice follows nnU-Net's memory-efficient soft Dice: background
excluded, smooth 1e-5, optionally computed over the whole batch ("batch Dice").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.dtypes import at_least_fp32


def soft_dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int | None = None,
    include_background: bool = False,
    smooth: float = 1e-5,
    batch_dice: bool = True,
) -> Tensor:
    """1 - mean soft Dice over classes; `target` holds class ids (B, H, W)."""
    num_classes = logits.shape[1]
    probs = at_least_fp32(logits).softmax(dim=1)
    if ignore_index is not None:
        valid = target != ignore_index
        target = torch.where(valid, target, torch.zeros_like(target))
    else:
        valid = None
    onehot = F.one_hot(target.long(), num_classes).movedim(-1, 1).to(probs.dtype)
    if valid is not None:
        v = valid.unsqueeze(1).to(probs.dtype)
        probs = probs * v
        onehot = onehot * v
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    dims = tuple(range(2, probs.ndim))
    if batch_dice:
        dims = (0, *dims)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * intersection + smooth) / (denominator + smooth).clamp_min(1e-8)
    return 1.0 - dice.mean()


class DiceCELoss(nn.Module):
    """`dice_weight * soft Dice + ce_weight * cross-entropy` (nnU-Net: 1:1)."""

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        ignore_index: int | None = 255,
        class_weights: Tensor | None = None,
        label_smoothing: float = 0.0,
        include_background: bool = False,
        smooth: float = 1e-5,
        batch_dice: bool = True,
    ) -> None:
        super().__init__()
        if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight == 0:
            raise ValueError(
                f"dice_weight and ce_weight must be >= 0 and not both 0, got "
                f"{dice_weight} and {ce_weight}"
            )
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.include_background = include_background
        self.smooth = smooth
        self.batch_dice = batch_dice
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight:
            ce = F.cross_entropy(
                at_least_fp32(logits),
                target.long(),
                weight=self.class_weights,
                ignore_index=-100 if self.ignore_index is None else self.ignore_index,
                label_smoothing=self.label_smoothing,
            )
            loss = loss + self.ce_weight * ce
        if self.dice_weight:
            dice = soft_dice_loss(
                logits,
                target,
                ignore_index=self.ignore_index,
                include_background=self.include_background,
                smooth=self.smooth,
                batch_dice=self.batch_dice,
            )
            loss = loss + self.dice_weight * dice
        return loss
