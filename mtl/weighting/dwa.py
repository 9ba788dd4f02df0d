"""Dynamic Weight Average (DWA).

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
arXiv:1803.10704.

w_i(t) = K * softmax_i(r(t-1) / T) with r_i(t-1) = L_i(t-1) / L_i(t-2), where L_i(e) is task i's
training loss averaged over epoch e; the first two epochs use w = 1. Defaults: temperature
T = 2 (the paper and the authors' code, github.com/lorenmt/mtan; LibMTL's default too).

The averages come from `observe_losses` (the rank-averaged loss of every optimizer step), so
they are identical on all DDP ranks, and the running sums live in buffers, so a run resumed
mid-epoch averages the same steps as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.weighting.base import LossWeighting


class DynamicWeightAverage(LossWeighting):
    """Tasks whose loss fell slowly over the last epoch get more weight."""

    def __init__(self, task_names: Sequence[str], temperature: float = 2.0) -> None:
        super().__init__(task_names)
        if not temperature > 0:
            raise ValueError(f"DWA temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        k = self.num_tasks
        self.register_buffer("epoch_loss_sum", torch.zeros(k))
        self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.long))
        # row 0: average loss of the last finished epoch, row 1: of the one before
        self.register_buffer("epoch_loss_history", torch.zeros(2, k))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def weights(self, losses: Tensor) -> Tensor:
        if int(self.epochs_seen) < 2:
            return torch.ones_like(losses)
        last, before = self.epoch_loss_history
        ratio = last / before.clamp_min(1e-12)
        w = self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)
        return w.to(losses)

    def observe_losses(self, losses: Tensor) -> None:
        self.epoch_loss_sum += losses.detach().to(self.epoch_loss_sum)
        self.epoch_steps += 1

    def on_train_epoch_end(self) -> None:
        if int(self.epoch_steps) == 0:  # nothing trained this epoch: keep the history
            return
        self.epoch_loss_history[1] = self.epoch_loss_history[0]
        self.epoch_loss_history[0] = self.epoch_loss_sum / self.epoch_steps
        self.epochs_seen += 1
        self.epoch_loss_sum.zero_()
        self.epoch_steps.zero_()
