"""Random Loss Weighting (RLW).

Lin, Ye, Zhang, Tsang, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning", TMLR 2022, arXiv:2111.10603.

Every optimizer step draws w = softmax(lambda), lambda ~ N(0, I_K), so the weights are positive
and sum to 1. Default distribution: the standard normal, as in LibMTL's RLW (`dist='Normal'`),
the authors' own implementation.

The draw uses `step_generator()` (seeded by (seed, step)), never the global RNG: every DDP rank
applies the same weights, all micro-batches of one step share them, and a resumed run draws
what the uninterrupted run drew.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.weighting.base import LossWeighting


class RandomLossWeighting(LossWeighting):
    """Weights resampled each step from softmax(N(0, I))."""

    def __init__(self, task_names: Sequence[str], seed: int = 0) -> None:
        super().__init__(task_names, seed=seed)

    def weights(self, losses: Tensor) -> Tensor:
        logits = torch.randn(self.num_tasks, generator=self.step_generator())
        return torch.softmax(logits, dim=0).to(losses)
