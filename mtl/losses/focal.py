"""Multi-class focal loss (Lin et al. 2017) for image labels (B x C) and pixel maps (B x C x H x W).

    FL = -w_t (1 - p_t)^gamma log p_t

down-weights samples the model already gets right (p_t near 1), so the many easy ones (the
background of a CT slice, the majority class) do not drown the rare hard ones. `weight`
holds per-class weights w_c (the paper's alpha_t; `class_weights` of the tasks). The mean is
normalised by the summed weights of the counted elements, as torch's weighted cross-entropy,
so gamma = 0 is exactly `F.cross_entropy(weight=...)`; the paper normalises by the number of
positive anchors instead, a detection notion with no counterpart here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.dtypes import at_least_fp32

# keeps (1 - p_t)^gamma differentiable at p_t = 1 for gamma < 1
MIN_MODULATION = 1e-12


def focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    weight: Tensor | None = None,
    ignore_index: int | None = None,
) -> Tensor:
    """Mean focal loss over the elements whose target is not `ignore_index`; a batch without
    any counted element gives a zero that keeps the graph."""
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    log_probs = F.log_softmax(at_least_fp32(logits), dim=1)
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_pt = log_probs.gather(1, safe.unsqueeze(1)).squeeze(1)
    # 1 - p_t as -expm1(log p_t): exact where p_t is close to 1
    modulation = (-torch.expm1(log_pt)).clamp_min(MIN_MODULATION) ** gamma if gamma else 1.0
    w = weight.to(log_probs.dtype)[safe] if weight is not None else torch.ones_like(log_pt)
    w = w * valid
    total = w.sum()
    if not bool(total > 0):
        return logits.sum() * 0.0
    return -(w * modulation * log_pt).sum() / total
