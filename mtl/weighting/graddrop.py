"""Gradient Sign Dropout (GradDrop).

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov, "Just Pick a Sign: Optimizing Deep
Multitask Models with Gradient Sign Dropout", NeurIPS 2020, arXiv:2010.06808.

At a shared activation, each element keeps only the task gradients of one sign: with positive
sign purity P = 0.5 (1 + sum_i g_i / sum_i |g_i|) and U ~ Uniform(0, 1), task i's gradient is
kept where (P > U and g_i > 0) or (P < U and g_i < 0), else multiplied by `leak`.

The training loop calls `aggregate_batched`, which follows the paper's batched form (and
LibMTL's): the sign statistics are sum over the batch of sign(input) * grad per task and element,
and the resulting mask is applied to every sample. Default: leak = 0.0 (pure GradDrop; LibMTL's
default). U comes from `step_generator()` on the gradients' device, so every DDP rank and a
resumed run draw the same U.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtl.weighting.base import GradientWeighting

PURITY_EPS = 1e-7


class GradDrop(GradientWeighting):
    """Drops, per element of the shared representation, the gradients of the less pure sign."""

    grad_sources = ("features",)
    source_note = (
        "GradDrop is defined at a shared activation layer: its sign statistics are summed over "
        "the batch per activation element (with the activation's sign), which gradients "
        "w.r.t. parameters do not provide (LibMTL likewise rejects parameter gradients)."
    )

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        leak: float = 0.0,
        grad_source: str = "features",
        **common: Any,
    ) -> None:
        super().__init__(task_names, grad_source=grad_source, **common)
        if not 0 <= leak <= 1:
            raise ValueError(f"GradDrop leak must be in [0, 1], got {leak}")
        self.leak = float(leak)

    def _mask(self, signed: Tensor) -> Tensor:
        """(T, F) sign statistics -> (T, F) keep mask, one U per element."""
        purity = 0.5 * (1 + signed.sum(0) / (signed.abs().sum(0) + PURITY_EPS))
        u = torch.rand(
            purity.shape, generator=self.step_generator(signed.device), device=signed.device
        )
        keep = ((purity > u) & (signed > 0)) | ((purity < u) & (signed < 0))
        return self.leak + (1 - self.leak) * keep.to(signed.dtype)

    def aggregate(self, grads: Tensor) -> Tensor:
        """(T, D) -> (D,), every column one element (a batch of one, positive inputs)."""
        return (grads * self._mask(grads)).sum(0)

    def aggregate_batched(self, grads: Tensor, inputs: Tensor | None = None) -> Tensor:
        """(T, B, F) per-task gradients w.r.t. the shared activation, (B, F) activation values
        (None: all positive) -> (B, F) gradient to backpropagate through the activation."""
        if grads.dim() != 3:
            raise ValueError(f"expected (tasks, batch, features) gradients, got {grads.shape}")
        signed = grads if inputs is None else grads * torch.sign(inputs).to(grads)
        mask = self._mask(signed.sum(1))
        return (grads * mask.unsqueeze(1)).sum(0)
