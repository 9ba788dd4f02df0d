"""MGDA / MGDA-UB: the min-norm point of the convex hull of the task gradients.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
arXiv:1810.04650; the multiple-gradient descent algorithm is Désidéri, "Multiple-gradient
descent algorithm (MGDA) for multiobjective optimization", Comptes Rendus Mathématique 350
(2012). With `grad_source=features` this is the paper's MGDA-UB (gradients w.r.t. the shared
representation, an upper bound of the parameter-space objective).

Defaults from the authors' reference code (github.com/isl-org/MultiObjectiveOptimization,
`min_norm_solvers.py`): MAX_ITER=250, STOP_CRIT=1e-5 (L1 change of the weights), the
pair-wise initialisation and the gradient normalisers `none|l2|loss|loss+`. The normaliser
only enters the solve; as in the reference, the weights are applied to the raw gradients.
`normalization: none` is LibMTL's default (the reference's sample config uses `loss+`).

Deviations: the solver is the Frank-Wolfe iteration of the paper's Algorithm 2 with exact
line search, clamped to exactly [0, 1] (the reference clamps to 0.001/0.999); for two tasks
the closed form is exact. The weights sum to 1, as in the reference (not to T).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from mtl.weighting.base import GramianWeighting

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def _pair_min_norm(aa: float, ab: float, bb: float) -> tuple[float, float]:
    """argmin over gamma in [0, 1] of ||gamma a + (1 - gamma) b||^2 -> (gamma, squared norm)."""
    if ab >= aa:
        return 1.0, aa
    if ab >= bb:
        return 0.0, bb
    gamma = (bb - ab) / (aa + bb - 2.0 * ab)
    return gamma, bb + gamma * (ab - bb)


def min_norm_weights(gram: np.ndarray, max_iter: int, stop_crit: float) -> tuple[np.ndarray, bool]:
    """min_x x^T M x over the simplex by Frank-Wolfe with exact line search (Sener & Koltun,
    Algorithm 2) plus away steps, which keep the fixed point but converge linearly.

    Starts from the best pair, like the reference (exact for two tasks). Returns
    (x, converged), converged meaning the L1 change of x fell below `stop_crit`."""
    n = gram.shape[0]
    if n == 1:
        return np.ones(1), True
    best = (np.inf, 0, 1, 1.0)
    for i in range(n):
        for j in range(i + 1, n):
            gamma, cost = _pair_min_norm(gram[i, i], gram[i, j], gram[j, j])
            if cost < best[0]:
                best = (cost, i, j, gamma)
    _, i, j, gamma = best
    x = np.zeros(n)
    x[i], x[j] = gamma, 1.0 - gamma
    if n == 2:
        return x, True
    for _ in range(max_iter):
        mx = gram @ x
        xmx = float(x @ mx)
        s = int(np.argmin(mx))  # Frank-Wolfe vertex (Algorithm 2)
        support = np.flatnonzero(x > 0)
        v = int(support[np.argmax(mx[support])])  # away vertex
        away = mx[v] - xmx > xmx - mx[s]
        if away:
            d = x.copy()
            d[v] -= 1.0
            gamma_max = x[v] / (1.0 - x[v])
        else:
            d = -x
            d[s] += 1.0
            gamma_max = 1.0
        curvature = float(d @ gram @ d)
        gamma = (
            gamma_max if curvature <= 0 else min(max(-float(mx @ d) / curvature, 0.0), gamma_max)
        )
        new = np.clip(x + gamma * d, 0.0, None)
        if away and gamma == gamma_max:
            new[v] = 0.0  # drop step: v leaves the support
        new /= new.sum()
        change = np.abs(new - x).sum()
        x = new
        if change < stop_crit:
            return x, True
    return x, False


class MGDA(GramianWeighting):
    """Weights on the simplex whose combination of the (normalised) task gradients has minimum
    norm: a common descent direction, or zero at a Pareto-stationary point."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params", "features")
    source_note: ClassVar[str] = "MGDA-UB (features) is the paper's efficient variant."

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        normalization: str = "none",
        max_iter: int = 250,
        stop_crit: float = 1e-5,
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got '{normalization}'"
            )
        if int(max_iter) < 1 or not stop_crit > 0:
            raise ValueError(f"need max_iter >= 1 and stop_crit > 0, got {max_iter}, {stop_crit}")
        self.normalization = normalization
        self.max_iter = int(max_iter)
        self.stop_crit = float(stop_crit)
        # this step's losses (for `loss`/`loss+`); transient, so not saved
        self.register_buffer(
            "losses", torch.full((self.num_tasks,), float("nan")), persistent=False
        )

    def observe_losses(self, losses: Tensor) -> None:
        self.losses.copy_(losses.detach().reshape(-1))

    def _normalizers(self, gram: np.ndarray) -> np.ndarray:
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        if self.normalization == "none":
            return np.ones_like(norms)
        if self.normalization == "l2":
            return np.maximum(norms, 1e-12)  # a zero gradient stays zero (weight 1, min-norm 0)
        losses = self.losses.double().cpu().numpy()
        if not (np.isfinite(losses).all() and (losses > 0).all()):
            self.report_failure(
                f"normalization='{self.normalization}' needs positive finite losses from "
                f"observe_losses(), got {losses.tolist()}; using no normalisation"
            )
            return np.ones_like(norms)
        if self.normalization == "loss":
            return losses
        return np.maximum(losses * norms, 1e-12)

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        m = gram.detach().double().cpu().numpy()
        scale = self._normalizers(m)
        x, converged = min_norm_weights(m / np.outer(scale, scale), self.max_iter, self.stop_crit)
        if not converged:
            # the last iterate is still a point of the simplex, usually close to the optimum
            self.report_failure(
                f"Frank-Wolfe did not reach stop_crit={self.stop_crit} in {self.max_iter} "
                f"iterations; using the last iterate"
            )
        return torch.as_tensor(x, dtype=gram.dtype, device=gram.device)
