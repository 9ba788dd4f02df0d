"""Uncertainty weighting (UW).

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018, arXiv:1705.07115.

Each task gets a learnable log-variance s_i = log sigma_i^2 and the total is
sum_i exp(-s_i) L_i + s_i: the homoscedastic-uncertainty likelihood with the paper's 1/2 factors
dropped (the paper has L_i / (2 sigma_i^2) + log sigma_i; dropping the common 1/2 only rescales
the gradient). s_i is optimised with the model by the main optimizer.

Defaults: s_i = 0 (sigma = 1, all weights 1 at the start), as in the Nash-MTL / FAMO reference
code (`Uncertainty` in methods/weight_methods.py), which uses 0.5 * (exp(-s) L + s). LibMTL's UW
uses L / (2 exp(s)) + s / 2 with s = -0.5 instead; set `init_log_variance` for another start.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl.weighting.base import LossWeighting


class UncertaintyWeighting(LossWeighting):
    """w_i = exp(-s_i), plus the regulariser sum_i s_i that stops all sigma_i growing without
    bound; the weights carry the graph to s, so one backward trains both."""

    def __init__(self, task_names: Sequence[str], init_log_variance: float = 0.0) -> None:
        super().__init__(task_names)
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), float(init_log_variance)))

    def weights(self, losses: Tensor) -> Tensor:
        return torch.exp(-self.log_vars).to(losses.dtype)

    def regularizer(self) -> Tensor:
        return self.log_vars.sum()

    def extra_metrics(self) -> dict[str, Tensor]:
        sigma = torch.exp(0.5 * self.log_vars.detach())
        return {f"sigma/{name}": sigma[i] for i, name in enumerate(self.task_names)}
