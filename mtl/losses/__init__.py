"""Losses that the tasks combine; torch's own are used where they suffice."""

from mtl.losses.dice import DiceCELoss, soft_dice_loss

__all__ = ["DiceCELoss", "soft_dice_loss"]
