"""Losses of the dense natural-image tasks, each over valid pixels only.

Validity follows `mtl.data.targets`: depth 0, an all-zero normal and label 255 mark pixels
without ground truth (NYUv2's depth holes, Cityscapes' void), which must not pull the
prediction anywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.dtypes import at_least_fp32


def masked_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean |pred - target| over pixels with target > 0 (MTAN/LibMTL's depth loss)."""
    pred, target = at_least_fp32(pred), at_least_fp32(target)
    valid = target > 0
    if not bool(valid.any()):
        return pred.sum() * 0.0
    return (pred - target).abs()[valid].mean()


def cosine_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean 1 - cos(pred, target) over pixels with a non-zero target normal (B x 3 x H x W)."""
    pred, target = at_least_fp32(pred), at_least_fp32(target)
    valid = target.abs().sum(dim=1) > 0
    if not bool(valid.any()):
        return pred.sum() * 0.0
    cos = F.cosine_similarity(pred, target, dim=1, eps=1e-8)
    return (1.0 - cos)[valid].mean()


def balanced_bce(logits: Tensor, target: Tensor, ignore_index: int = 255) -> Tensor:
    """Class-balanced BCE (HED, Xie & Tu 2015): boundary pixels are rare (a few %), so each
    class is weighted by the other's share in the batch; `ignore_index` pixels are left out."""
    logits, target = at_least_fp32(logits), at_least_fp32(target)
    valid = target != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    positive = (target == 1) & valid
    n_pos = positive.sum().to(logits.dtype)
    n_all = valid.sum().to(logits.dtype)
    weight = torch.where(positive, 1.0 - n_pos / n_all, n_pos / n_all)
    loss = F.binary_cross_entropy_with_logits(
        logits, positive.to(logits.dtype), weight=weight * valid, reduction="sum"
    )
    # normalised by the summed weights (each class contributes half); a batch without any
    # boundary pixel has zero weight everywhere, as in HED, and gives a zero loss
    return loss / (weight * valid).sum().clamp_min(1e-12)
