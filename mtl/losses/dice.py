"""Soft Dice, the region term of nnU-Net's default segmentation loss (Dice + CE, see
`mtl.losses.composite`).

Written here (rather than MONAI's) because we need `ignore_index`; it follows nnU-Net's
memory-efficient soft Dice: background excluded, smooth 1e-5, optionally computed over the
whole batch ("batch Dice").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.dtypes import at_least_fp32


def soft_overlap(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int | None = None,
    include_background: bool = False,
    batch_dice: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft true positives, false positives and false negatives per class (and per image
    unless `batch_dice`) from softmax probabilities; `ignore_index` pixels count nowhere."""
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
    tp = (probs * onehot).sum(dims)
    return tp, probs.sum(dims) - tp, onehot.sum(dims) - tp


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
    tp, fp, fn = soft_overlap(
        logits,
        target,
        ignore_index=ignore_index,
        include_background=include_background,
        batch_dice=batch_dice,
    )
    dice = (2.0 * tp + smooth) / (2.0 * tp + fp + fn + smooth).clamp_min(1e-8)
    return 1.0 - dice.mean()
