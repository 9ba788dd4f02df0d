"""How T task losses become one update.

Loss-based weightings (this file's `LossWeighting`) return `total = w . losses` and are trained
with one backward. Gradient-based aggregators (PCGrad, MGDA, ...) will subclass `Weighting`
with `needs_task_gradients = True` and get per-task gradients instead (DESIGN.md §1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Weighting(nn.Module):
    """Base of all MTL weighting methods; state (if any) lives in buffers/parameters so it
    is saved in checkpoints."""

    needs_task_gradients: bool = False

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("a weighting needs at least one task")
        self.task_names = list(task_names)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)


class LossWeighting(Weighting):
    """Combines the loss vector linearly: one backward per step."""

    def weights(self, losses: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (total loss, weights used) for a (T,) vector of task losses."""
        weights = self.weights(losses)
        return (weights * losses).sum(), weights.detach()


class EqualWeighting(LossWeighting):
    """EW: the plain sum of task losses (LibMTL's EW, all weights 1)."""

    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones_like(losses)
