"""Losses that the tasks combine; torch's own are used where they suffice."""

from mtl.losses.dense import balanced_bce, cosine_loss, masked_l1
from mtl.losses.dice import DiceCELoss, soft_dice_loss

__all__ = ["DiceCELoss", "balanced_bce", "cosine_loss", "masked_l1", "soft_dice_loss"]
