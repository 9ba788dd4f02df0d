"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021, arXiv:2110.14048. Follows the authors' reference implementation
(github.com/Cranial-XIX/CAGrad, `nyuv2/utils.py`, `cagrad()`, whose `alpha` is our `c`): the dual
min_{x in simplex} x^T A b + c ||g0|| sqrt(x^T A x), with A = G G^T, b = 1/T and g0 the mean
gradient, is solved with scipy's SLSQP from x = b; the update is
(g0 + lambda g_x) / (1 + c^2) with lambda = c ||g0|| / ||g_x|| (`rescale=1`), multiplied by T
"to match the sum loss" as the reference's `overwrite_grad` does. As weights:
w = (1 + T lambda x) / (1 + c^2). Defaults: `c=0.4` (their NYUv2 run script; 0.5 is the
function default and the paper's setting elsewhere), `rescale=1`.

Deviation: SLSQP runs on A divided by its mean diagonal. The minimiser is unchanged (the
objective is homogeneous in A), but SLSQP's absolute `ftol` would otherwise stop at the start
point when gradients are small; the reference's 1e-8 guards are applied in those units.
If SLSQP reports failure the step still uses its answer (projected onto the simplex), as the
reference does without checking; the failure is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from mtl.weighting.base import GramianWeighting

RESCALES = (0, 1, 2)


class CAGrad(GramianWeighting):
    """Maximises the worst task's improvement within a ball of radius c ||g0|| around the
    mean gradient g0, so the update stays close to plain averaging."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params",)
    source_note: ClassVar[str] = (
        "The paper and the reference compute gradients of the shared parameters."
    )

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        c: float = 0.4,
        rescale: int = 1,
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if not (math.isfinite(c) and c >= 0):
            raise ValueError(f"c must be finite and >= 0, got {c}")
        if rescale not in RESCALES:
            raise ValueError(f"rescale must be one of {RESCALES}, got {rescale}")
        self.c = float(c)
        self.rescale = int(rescale)

    def solve_dual(self, gram: np.ndarray) -> tuple[np.ndarray, float]:
        """(x, lambda): the dual solution on the simplex and lambda = c ||g0|| / ||g_x||."""
        n = gram.shape[0]
        b = np.full(n, 1.0 / n)
        unit = float(np.mean(np.diag(gram)))
        if not unit > 0:  # every gradient is zero: plain averaging
            return b, 0.0
        a = gram / unit
        radius = self.c * math.sqrt(max(float(a.mean()), 0.0) + 1e-8)
        ab = a @ b

        def objective(x: np.ndarray) -> float:
            return float(x @ ab + radius * math.sqrt(max(float(x @ a @ x), 0.0) + 1e-8))

        def jacobian(x: np.ndarray) -> np.ndarray:
            return ab + radius * (a @ x) / math.sqrt(max(float(x @ a @ x), 0.0) + 1e-8)

        res = minimize(
            objective,
            b,
            jac=jacobian,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * n,
            constraints={"type": "eq", "fun": lambda x: 1.0 - x.sum()},
        )
        x = np.asarray(res.x, dtype=np.float64)
        if not res.success:
            self.report_failure(f"SLSQP: {res.message} (status {res.status}); using its x")
        if not np.isfinite(x).all():
            x = b
        x = np.clip(x, 0.0, None)
        x = x / x.sum() if x.sum() > 0 else b
        norm_x = math.sqrt(max(float(x @ a @ x), 0.0))
        return x, (radius / norm_x if norm_x > 1e-8 else 0.0)

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        x, lam = self.solve_dual(gram.detach().double().cpu().numpy())
        denominator = (1.0, 1.0 + self.c**2, 1.0 + self.c)[self.rescale]
        weights = (1.0 + len(x) * lam * x) / denominator
        return torch.as_tensor(weights, dtype=gram.dtype, device=gram.device)
