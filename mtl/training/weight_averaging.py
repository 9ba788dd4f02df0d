"""An exponential moving average (EMA) of the weights that every launcher can carry.

Lightning's `EMAWeightAveraging` holds torch's EMA update, a closure, and `ddp_spawn`
(`trainer=ddp_cpu`) cannot pickle closures. `EMAWeights` keeps Lightning's `WeightAveraging`
machinery (what is averaged, when the averaged model is validated, what checkpoints hold,
exact resume) and gives it a picklable update, applied to all tensors of a dtype at once.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor


class EMAUpdate:
    """averaged <- decay * averaged + (1 - decay) * current, in place, for a list of tensors."""

    def __init__(self, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = float(decay)

    @torch.no_grad()
    def __call__(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - self.decay)
            return
        for avg, cur in zip(averaged, current, strict=True):  # integer buffers (BatchNorm counts)
            avg.copy_(avg * self.decay + cur * (1.0 - self.decay))


class EMAWeights(WeightAveraging):
    """EMA of the weights (and, with `use_buffers`, of BatchNorm statistics), updated after
    every `update_every_n_steps`-th optimizer step from `update_starting_at_step` on.

    The average spans about 1 / (1 - decay) updates; keep that well below the run's steps.
    """

    def __init__(
        self,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int = 0,
        use_buffers: bool = True,
        device: str | None = None,
    ) -> None:
        if update_every_n_steps < 1 or update_starting_at_step < 0:
            raise ValueError(
                "EMA update_every_n_steps must be >= 1 and update_starting_at_step >= 0, got "
                f"{update_every_n_steps} and {update_starting_at_step}"
            )
        self.update = EMAUpdate(decay)
        super().__init__(device=device, use_buffers=use_buffers, multi_avg_fn=self.update)
        self.decay = self.update.decay
        self.update_every_n_steps = int(update_every_n_steps)
        self.update_starting_at_step = int(update_starting_at_step)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return (
            step_idx is not None
            and step_idx >= self.update_starting_at_step
            and step_idx % self.update_every_n_steps == 0
        )
