"""PCGrad: project each task gradient off the gradients it conflicts with.

Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning",
NeurIPS 2020, arXiv:2001.06782. No hyperparameters; the projected gradients are summed, as in
the authors' reference implementation (github.com/tianheyu927/PCGrad).

Gramian form: with g_i^PC = C_i . G every inner product the surgery needs is C_i M_j
(M = G G^T), and the update sum_i g_i^PC = (sum_i C_i) . G is a weighted sum of the task
gradients, so DDP solves once on the reduced Gramian. Each task visits the others in its own
random order (Algorithm 1), drawn from `step_generator()`: every rank, and a resumed run, draws
the same order.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mtl.weighting.base import GramianWeighting


def visiting_orders(num_tasks: int, generator: torch.Generator) -> list[list[int]]:
    """For each task i, the other tasks in a random order."""
    orders = []
    for i in range(num_tasks):
        others = [j for j in range(num_tasks) if j != i]
        perm = torch.randperm(len(others), generator=generator).tolist()
        orders.append([others[k] for k in perm])
    return orders


class PCGrad(GramianWeighting):
    """Weights = column sums of the surgery coefficients C (g_i^PC = sum_k C_ik g_k)."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params",)
    source_note: ClassVar[str] = "The paper projects gradients of the shared parameters."

    def coefficients(self, gram: Tensor) -> Tensor:
        """(T, T) C with g_i^PC = sum_k C_ik g_k, for this step's random visiting orders."""
        m = gram.detach().double().cpu().numpy()
        n = m.shape[0]
        c = np.eye(n)
        for i, order in enumerate(visiting_orders(n, self.step_generator())):
            for j in order:
                dot = float(c[i] @ m[:, j])  # g_i^PC . g_j
                if dot < 0 and m[j, j] > 0:
                    c[i, j] -= dot / m[j, j]
        return torch.as_tensor(c, dtype=gram.dtype, device=gram.device)

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        return self.coefficients(gram).sum(0)
