"""Precision helpers shared by losses, heads and the training step."""

from __future__ import annotations

import torch
from torch import Tensor


def at_least_fp32(t: Tensor) -> Tensor:
    """fp16/bf16 -> fp32 (losses and reductions need it under AMP); fp32 and fp64 unchanged,
    so a `64-true` run stays float64 end to end."""
    return t.to(torch.promote_types(t.dtype, torch.float32))
