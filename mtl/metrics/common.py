"""Small helpers shared by the split-level metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def safe_ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """`numerator / denominator` in float64, NaN where the denominator is 0.

    A score over an empty set (no valid pixel in the split) is undefined, not 0: NaN makes the
    gap visible in logs and tables instead of passing for a real score.
    """
    numerator = numerator.double()
    denominator = denominator.double()
    nan = torch.full_like(denominator, float("nan"))
    return torch.where(
        denominator > 0, numerator / torch.where(denominator > 0, denominator, 1), nan
    )


def at_least_fp32(tensor: Tensor) -> Tensor:
    """Half-precision outputs (AMP) are promoted so per-pixel errors keep float32 accuracy."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def check_same_shape(pred: Tensor, target: Tensor, name: str, channels: int) -> None:
    """Fail early with the metric's name on the B x channels x H x W contract."""
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != channels:
        raise ValueError(
            f"{name} expects pred and target of shape B x {channels} x H x W, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
