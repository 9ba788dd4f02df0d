"""Soft Tversky loss (Salehi et al. 2017): a Dice whose false positives and false negatives
weigh differently,

    TI_c = (TP_c + s) / (TP_c + alpha FP_c + beta FN_c + s),   loss = 1 - mean_c TI_c,

so beta > alpha (default 0.3 / 0.7) trades precision for recall of small structures;
alpha = beta = 0.5 is the soft Dice. Soft counts, `ignore_index`, background and batch
handling are those of `soft_dice_loss`.
"""

from __future__ import annotations

from torch import Tensor

from mtl.losses.dice import soft_overlap


def soft_tversky_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.3,
    beta: float = 0.7,
    ignore_index: int | None = None,
    include_background: bool = False,
    smooth: float = 1e-5,
    batch_dice: bool = True,
) -> Tensor:
    """1 - mean Tversky index over classes; `target` holds class ids (B, H, W)."""
    if alpha < 0 or beta < 0 or alpha + beta == 0:
        raise ValueError(f"Tversky alpha and beta must be >= 0, not both 0; got {alpha}, {beta}")
    tp, fp, fn = soft_overlap(
        logits,
        target,
        ignore_index=ignore_index,
        include_background=include_background,
        batch_dice=batch_dice,
    )
    index = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(1e-8)
    return 1.0 - index.mean()
