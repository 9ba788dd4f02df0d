"""Fast Adaptive Multitask Optimization (FAMO).

Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023,
arXiv:2306.03792. Reference implementation: github.com/Cranial-XIX/FAMO (`famo.py`).

Task logits w give z = softmax(w); the model minimises sum_i z_i log(L_i - min_i + eps) / c with
c = sum_i z_i / (L_i - min_i + eps) (detached), i.e. the loss weights are z_i / (c D_i). After
the optimizer step the loop re-evaluates the same batch (`needs_losses_after_step`) and w takes
one Adam step along -J^T delta, delta_i = log D_i(before) - log D_i(after) (how much each task's
log-loss fell), J the softmax Jacobian: tasks that improved less get more weight.

Defaults (reference code): w = 0, min_losses = 0, eps = 1e-8, Adam(betas=(0.9, 0.999),
eps=1e-8) on w with lr `w_lr` = 0.025 (`--method-params-lr` default) and L2 weight decay
`gamma` = 0.001. The reference's argparse/`famo.py` default is gamma = 0.01 and its QM9 script
uses 0.001; its NYUv2 script was not available to check, so gamma follows LibMTL's FAMO default
(`FAMO_w_gamma` = 1e-3). The reference's max-norm clipping of the shared gradients is a trainer
setting here (`gradient_clip_val`), not part of the weighting.

The Adam update is written out (it matches `torch.optim.Adam` with `weight_decay`) so that its
moments live in buffers and checkpoints resume it exactly; weights use the DDP-averaged
reference losses, so every rank applies the same weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from mtl.weighting.base import LossWeighting

log = logging.getLogger(__name__)


class FAMO(LossWeighting):
    """Weights that balance the rate at which each task's log-loss decreases."""

    needs_losses_after_step = True

    def __init__(
        self,
        task_names: Sequence[str],
        w_lr: float = 0.025,
        gamma: float = 0.001,
        betas: Sequence[float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        eps: float = 1e-8,
    ) -> None:
        super().__init__(task_names)
        if not w_lr > 0 or gamma < 0:
            raise ValueError(f"FAMO needs w_lr > 0 and gamma >= 0, got {w_lr}, {gamma}")
        self.w_lr = float(w_lr)
        self.gamma = float(gamma)
        self.betas = (float(betas[0]), float(betas[1]))
        self.adam_eps = float(adam_eps)
        self.eps = float(eps)
        k = self.num_tasks
        self.register_buffer("logits", torch.zeros(k))
        self.register_buffer("min_losses", torch.zeros(k))
        self.register_buffer("adam_m", torch.zeros(k))
        self.register_buffer("adam_v", torch.zeros(k))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.long))

    def _gaps(self, losses: Tensor) -> Tensor:
        return losses.detach().to(self.min_losses) - self.min_losses + self.eps

    def weights(self, losses: Tensor) -> Tensor:
        z = torch.softmax(self.logits, dim=0)
        gaps = self._gaps(losses)
        c = (z / gaps).sum()
        return (z / (c * gaps)).to(losses)

    def forward(self, losses: Tensor, reference: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ref = (losses if reference is None else reference).detach()
        z = torch.softmax(self.logits, dim=0)
        gaps = self._gaps(ref)
        c = (z / gaps).sum()
        weights = (z / (c * gaps)).to(losses)
        # value: the reference's objective sum z log(D) / c at the reference losses;
        # gradient w.r.t. losses: the weights (= its gradient), applied linearly for DDP
        objective = (torch.log(gaps) * z / c).sum().to(losses)
        total = objective + (weights * (losses - ref)).sum()
        return total, weights.detach()

    def after_step(self, losses_before: Tensor, losses_after: Tensor) -> None:
        delta = torch.log(self._gaps(losses_before)) - torch.log(self._gaps(losses_after))
        if not torch.isfinite(delta).all():
            log.warning("FAMO: non-finite loss change at step %d, logits not updated", self.step)
            return
        z = torch.softmax(self.logits, dim=0)
        # J^T delta with J = diag(z) - z z^T, the (symmetric) Jacobian of softmax
        grad = z * (delta - (z * delta).sum())
        self._adam_step(grad)

    def _adam_step(self, grad: Tensor) -> None:
        """One `torch.optim.Adam` step (L2 `weight_decay`, no amsgrad) on the logits."""
        beta1, beta2 = self.betas
        grad = grad + self.gamma * self.logits
        self.adam_steps += 1
        t = int(self.adam_steps)
        self.adam_m.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.adam_v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = self.adam_v.sqrt() / (1 - beta2**t) ** 0.5 + self.adam_eps
        self.logits.addcdiv_(self.adam_m, denom, value=-self.w_lr / (1 - beta1**t))

    def extra_metrics(self) -> dict[str, Tensor]:
        z = torch.softmax(self.logits, dim=0)
        return {f"z/{name}": z[i] for i, name in enumerate(self.task_names)}
