"""GradNorm.

Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018, arXiv:1711.02257.

Learnable task weights w pull each weighted gradient norm G_i = w_i ||g_i|| towards the common
target mean(G) * r_i^alpha, where r_i = (L_i / L_i(0)) / mean_j(L_j / L_j(0)) is task i's
relative inverse training rate. Each step the model is updated with the current w, then w takes
one gradient step on sum_i |G_i - target_i| (target held constant, as in the paper), is clipped
at 0 and renormalised to sum to K.

There is no official code. Defaults: asymmetry alpha = 1.5 (LibMTL's GradNorm default); weight
step size lr = 0.025 (the paper gives none; plain gradient steps on w, the paper's renormalisation
to sum K after each). L(0) is the first observed step's (rank-averaged) loss, as in the paper;
LibMTL instead trains the first epoch with equal weights and uses its average loss.

The norms ||g_i|| are sqrt(diag(Gramian)), so the method is a Gramian method: with
grad_source=features they are norms w.r.t. the shared representation rather than the paper's
last shared layer weights (a cheaper proxy; grad_source=params uses all shared weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtl.weighting.base import GramianWeighting


class GradNorm(GramianWeighting):
    """Balances weighted gradient norms in proportion to each task's relative training rate."""

    grad_sources = ("params", "features")
    source_note = (
        "GradNorm needs only per-task gradient norms; both the shared parameters and the "
        "shared features give them."
    )

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        alpha: float = 1.5,
        lr: float = 0.025,
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if not lr > 0:
            raise ValueError(f"GradNorm lr must be > 0, got {lr}")
        self.alpha = float(alpha)
        self.lr = float(lr)
        k = self.num_tasks
        self.register_buffer("task_weights", torch.ones(k))
        self.register_buffer("initial_losses", torch.zeros(k))
        self.register_buffer("current_losses", torch.zeros(k))
        self.register_buffer("has_losses", torch.zeros((), dtype=torch.bool))

    def observe_losses(self, losses: Tensor) -> None:
        losses = losses.detach().to(self.current_losses)
        if not bool(self.has_losses):
            self.initial_losses.copy_(losses)
            self.has_losses.fill_(True)
        self.current_losses.copy_(losses)

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        used = self.task_weights.clone()
        if not bool(self.has_losses):  # no loss seen yet: no training rates to balance
            return used.to(gram)
        norms = torch.diagonal(gram).to(used).clamp_min(0).sqrt()
        weighted = used * norms
        ratio = self.current_losses / self.initial_losses.clamp_min(1e-12)
        rate = ratio / ratio.mean().clamp_min(1e-12)
        target = weighted.mean() * rate**self.alpha
        # d/dw_i sum_j |w_j ||g_j|| - target_j| with the target constant
        grad = torch.sign(weighted - target) * norms
        new = (used - self.lr * grad).clamp_min(0)
        total = new.sum()
        if not torch.isfinite(total) or total <= 0:
            self.report_failure(f"task weights degenerated to {new.tolist()}; reset to ones")
            new = torch.ones_like(new)
            total = new.sum()
        self.task_weights.copy_(new * (self.num_tasks / total))
        return used.to(gram)
