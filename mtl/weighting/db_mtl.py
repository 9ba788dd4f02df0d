"""Dual-Balancing Multi-Task Learning (DB-MTL).

Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Kwok, "Dual-Balancing for Multi-Task Learning",
arXiv:2308.12029, 2023. Reference implementation: the authors' LibMTL (`weighting/DB_MTL.py`).

Two balancing steps: loss scale (every task trains on log(L_i + 1e-8), so a task's scale does
not matter) and gradient magnitude (an EMA ghat_i of each task's gradient is rescaled to the
largest EMA norm, d = sum_i (max_j ||ghat_j|| / ||ghat_i||) ghat_i).
EMA: ghat_i <- beta_t ghat_i + (1 - beta_t) g_i with beta_t = beta / t^beta_sigma, ghat = 0 at
the start (no bias correction), t counting the EMA updates from 1.

Defaults (LibMTL's argparse defaults): beta = 0.9, beta_sigma = 0 (a constant beta).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from mtl.weighting.base import GradientWeighting

LOG_EPS = 1e-8
NORM_EPS = 1e-8


class DBMTL(GradientWeighting):
    """Log losses, then every task's (EMA) gradient is scaled up to the largest norm."""

    grad_sources = ("params",)
    source_note = (
        "DB-MTL keeps an EMA of each task's gradient across steps; gradients w.r.t. the shared "
        "features belong to different samples every step, so their EMA mixes unrelated "
        "quantities (LibMTL likewise rejects representation gradients)."
    )

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        beta: float = 0.9,
        beta_sigma: float = 0.0,
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if not 0 <= beta < 1 or beta_sigma < 0:
            raise ValueError(
                f"DB-MTL needs 0 <= beta < 1 and beta_sigma >= 0, got {beta}, {beta_sigma}"
            )
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_scales", torch.ones(self.num_tasks))
        self.grad_ema: Tensor | None = None  # (T, D); D is only known at the first step

    def transform_losses(self, losses: Tensor) -> Tensor:
        return torch.log(losses + LOG_EPS)

    def aggregate(self, grads: Tensor) -> Tensor:
        grads = grads.float()
        if self.grad_ema is None:
            self.grad_ema = torch.zeros_like(grads)
        elif self.grad_ema.shape != grads.shape:
            raise ValueError(
                f"DB-MTL's gradient EMA has shape {tuple(self.grad_ema.shape)} but the task "
                f"gradients have shape {tuple(grads.shape)}: the shared parameters changed"
            )
        ema = self.grad_ema.to(grads.device)
        self.ema_steps += 1
        beta_t = self.beta / float(self.ema_steps) ** self.beta_sigma
        ema.mul_(beta_t).add_(grads, alpha=1 - beta_t)
        self.grad_ema = ema
        norms = ema.norm(dim=1)
        scales = norms.max() / (norms + NORM_EPS)
        self.last_scales.copy_(scales)
        return scales @ ema

    def get_extra_state(self) -> dict[str, Any]:
        return {"grad_ema": None if self.grad_ema is None else self.grad_ema.detach().clone()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        ema = state.get("grad_ema")
        self.grad_ema = None if ema is None else ema.detach().clone()

    def extra_metrics(self) -> dict[str, Tensor]:
        metrics = super().extra_metrics()
        for i, name in enumerate(self.task_names):
            metrics[f"scale/{name}"] = self.last_scales[i]
        return metrics
