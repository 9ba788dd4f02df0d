"""The losses of class-label tasks, by name: a pixel (or sample) term plus a region term.

    loss = ce_weight * (CE | focal) + dice_weight * (Dice | Tversky)

| name | terms |
|---|---|
| `ce`, `focal` | cross-entropy or focal only (classification: these two) |
| `dice`, `tversky` | soft Dice or soft Tversky only |
| `dice_ce` (nnU-Net's default), `dice_focal`, `tversky_ce`, `tversky_focal` | both |

Per-class `class_weights` weigh the CE / focal term (focal's alpha_t); a term whose weight is
0 is left out (`dice_ce` with `dice_weight: 0` is plain CE, the natural-image choice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.dtypes import at_least_fp32
from mtl.losses.dice import soft_dice_loss
from mtl.losses.focal import focal_loss
from mtl.losses.tversky import soft_tversky_loss

PIXEL_TERMS = ("ce", "focal")
REGION_TERMS = ("dice", "tversky")
LOSS_NAMES = (
    "ce",
    "focal",
    "dice",
    "tversky",
    "dice_ce",
    "dice_focal",
    "tversky_ce",
    "tversky_focal",
)


def loss_terms(name: str) -> tuple[str | None, str | None]:
    """(pixel term, region term) of a loss name; None where the name has no such term."""
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {list(LOSS_NAMES)}")
    parts = name.split("_")
    pixel = next((p for p in parts if p in PIXEL_TERMS), None)
    region = next((p for p in parts if p in REGION_TERMS), None)
    return pixel, region


class CompositeLoss(nn.Module):
    """`ce_weight * pixel term + dice_weight * region term`, the terms chosen by `name`.

    `logits` are B x C (x H x W), `target` class ids B (x H x W) with `ignore_index` where
    unknown (ignored by both terms). `focal_gamma` is used by focal terms, `tversky_alpha`
    (false positives) and `tversky_beta` (false negatives) by Tversky terms.
    """

    def __init__(
        self,
        name: str = "dice_ce",
        *,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        ignore_index: int | None = 255,
        class_weights: Tensor | None = None,
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        tversky_alpha: float = 0.3,
        tversky_beta: float = 0.7,
        include_background: bool = False,
        smooth: float = 1e-5,
        batch_dice: bool = True,
    ) -> None:
        super().__init__()
        pixel, region = loss_terms(name)
        if dice_weight < 0 or ce_weight < 0:
            raise ValueError(
                f"dice_weight and ce_weight must be >= 0, got {dice_weight} and {ce_weight}"
            )
        self.pixel = pixel if pixel and ce_weight > 0 else None
        self.region = region if region and dice_weight > 0 else None
        if self.pixel is None and self.region is None:
            raise ValueError(
                f"loss {name!r} has no term left: its dice_weight ({dice_weight}) / ce_weight "
                f"({ce_weight}) are 0; give a term a positive weight"
            )
        if class_weights is not None and self.pixel is None:
            raise ValueError(
                f"class_weights weigh the CE / focal term, which loss {name!r} (with these "
                f"weights) does not have; choose e.g. dice_ce or drop class_weights"
            )
        if label_smoothing and self.pixel != "ce":
            raise ValueError(f"label_smoothing applies to the CE term only; loss {name!r} has none")
        if focal_gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        if tversky_alpha < 0 or tversky_beta < 0 or tversky_alpha + tversky_beta == 0:
            raise ValueError(
                f"tversky_alpha and tversky_beta must be >= 0 and not both 0, got "
                f"{tversky_alpha} and {tversky_beta}"
            )
        self.name = name
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.focal_gamma = focal_gamma
        self.tversky_alpha = tversky_alpha
        self.tversky_beta = tversky_beta
        self.include_background = include_background
        self.smooth = smooth
        self.batch_dice = batch_dice
        self.register_buffer("class_weights", class_weights, persistent=False)

    def pixel_term(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.pixel == "focal":
            return focal_loss(
                logits,
                target,
                gamma=self.focal_gamma,
                weight=self.class_weights,
                ignore_index=self.ignore_index,
            )
        return F.cross_entropy(
            at_least_fp32(logits),
            target.long(),
            weight=self.class_weights,
            ignore_index=-100 if self.ignore_index is None else self.ignore_index,
            label_smoothing=self.label_smoothing,
        )

    def region_term(self, logits: Tensor, target: Tensor) -> Tensor:
        options = dict(
            ignore_index=self.ignore_index,
            include_background=self.include_background,
            smooth=self.smooth,
            batch_dice=self.batch_dice,
        )
        if self.region == "tversky":
            return soft_tversky_loss(
                logits, target, alpha=self.tversky_alpha, beta=self.tversky_beta, **options
            )
        return soft_dice_loss(logits, target, **options)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.pixel is not None:
            loss = loss + self.ce_weight * self.pixel_term(logits, target)
        if self.region is not None:
            loss = loss + self.dice_weight * self.region_term(logits, target)
        return loss


class DiceCELoss(CompositeLoss):
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
        super().__init__(
            "dice_ce",
            dice_weight=dice_weight,
            ce_weight=ce_weight,
            ignore_index=ignore_index,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            include_background=include_background,
            smooth=smooth,
            batch_dice=batch_dice,
        )
