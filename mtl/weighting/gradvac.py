"""GradVac: raise each pair's gradient cosine to an adaptive (EMA) target.

Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving Multi-task
Optimization in Massively Multilingual Models", ICLR 2021, arXiv:2010.05874. The authors
released no code; this follows the paper's Algorithm 1 at whole-model granularity: for each
task i and the others j in random order, phi_ij = cos(g_i^PC, g_j); if phi_ij is below the
target phi_hat_ij, add the multiple of g_j that makes the cosine equal the target; then
phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij for every visited pair. The corrected
gradients are summed. `beta=0.01` is the paper's experimental setting (1e-2); LibMTL and
torchjd default to 0.5, and LibMTL only updates the EMA when it corrects (the paper and
torchjd always do).

Gramian form as in PCGrad: g_i^PC = C_i . G, so cosines come from C M with M = G G^T.
The targets phi_hat (T x T, zeros at the start) are a buffer, saved in checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from mtl.weighting.base import GramianWeighting
from mtl.weighting.pcgrad import visiting_orders


class GradVac(GramianWeighting):
    """Weights = column sums of the vaccinated coefficients C (g_i^PC = sum_k C_ik g_k)."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params",)
    source_note: ClassVar[str] = "The paper adjusts gradients of the shared parameters."

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        beta: float = 0.01,
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = float(beta)
        self.register_buffer("phi_hat", torch.zeros(self.num_tasks, self.num_tasks))

    def coefficients(self, gram: Tensor) -> Tensor:
        """(T, T) C with g_i^PC = sum_k C_ik g_k; updates the targets `phi_hat`."""
        m = gram.detach().double().cpu().numpy()
        n = m.shape[0]
        targets = self.phi_hat.double().cpu().numpy()
        c = np.eye(n)
        for i, order in enumerate(visiting_orders(n, self.step_generator())):
            for j in order:
                dots = c[i] @ m  # g_i^PC . g_k for every k
                norm_i = math.sqrt(max(float(dots @ c[i]), 0.0))
                norm_j = math.sqrt(max(float(m[j, j]), 0.0))
                if norm_i == 0.0 or norm_j == 0.0:
                    continue  # cosine undefined: no correction, no EMA update
                phi = min(max(float(dots[j]) / (norm_i * norm_j), -1.0), 1.0)
                target = float(targets[i, j])
                sin_target = math.sqrt(max(1.0 - target**2, 0.0))
                if phi < target and sin_target > 0.0:
                    sin_phi = math.sqrt(max(1.0 - phi**2, 0.0))
                    c[i, j] += (
                        norm_i * (target * sin_phi - phi * sin_target) / (norm_j * sin_target)
                    )
                targets[i, j] = (1.0 - self.beta) * target + self.beta * phi
        self.phi_hat.copy_(torch.as_tensor(targets))
        return torch.as_tensor(c, dtype=gram.dtype, device=gram.device)

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        return self.coefficients(gram).sum(0)
