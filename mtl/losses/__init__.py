"""Losses that the tasks combine; torch's own are used where they suffice."""

from mtl.losses.class_weights import FREQUENCY_MODES, class_weights_from_frequencies
from mtl.losses.composite import LOSS_NAMES, CompositeLoss, DiceCELoss, loss_terms
from mtl.losses.dense import balanced_bce, cosine_loss, masked_l1
from mtl.losses.dice import soft_dice_loss, soft_overlap
from mtl.losses.focal import focal_loss
from mtl.losses.tversky import soft_tversky_loss

__all__ = [
    "FREQUENCY_MODES",
    "LOSS_NAMES",
    "CompositeLoss",
    "DiceCELoss",
    "balanced_bce",
    "class_weights_from_frequencies",
    "cosine_loss",
    "focal_loss",
    "loss_terms",
    "masked_l1",
    "soft_dice_loss",
    "soft_overlap",
    "soft_tversky_loss",
]
