"""Geometric Loss Strategy (GLS).

Chennupati, Sistu, Yogamani, Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation and
Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019, arXiv:1904.08492.

total = (prod_i L_i)^(1/K), computed as exp(mean_i log L_i) so K small or large losses do not
under/overflow the product. No hyper-parameters (LibMTL's GLS has none either).

The implied weights are d total / d L_i = total / (K L_i). They are taken from the DDP-averaged
reference losses and applied linearly, so every rank uses the same weights and the step equals
the single-process step on the union of the batches; on one process the value and gradient
are exactly those of the geometric mean. Losses must be positive; they are clamped at 1e-12 so
a loss of exactly 0 does not turn the step into NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.weighting.base import LossWeighting

MIN_LOSS = 1e-12


class GeometricLossStrategy(LossWeighting):
    """Minimises the geometric mean of the task losses: scale-invariant per task."""

    def weights(self, losses: Tensor) -> Tensor:
        ref = losses.detach().clamp_min(MIN_LOSS)
        return torch.exp(torch.log(ref).mean()) / (self.num_tasks * ref)

    def forward(self, losses: Tensor, reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ref = (losses if reference is None else reference).detach().clamp_min(MIN_LOSS)
        geometric_mean = torch.exp(torch.log(ref).mean())
        weights = geometric_mean / (self.num_tasks * ref)
        # value: the geometric mean of the reference losses; gradient w.r.t. losses: weights
        total = geometric_mean + (weights * (losses - ref)).sum()
        return total, weights.detach()
