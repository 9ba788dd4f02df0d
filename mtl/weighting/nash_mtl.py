"""Nash-MTL: the Nash bargaining solution among tasks for the update direction.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning as a
Bargaining Game", ICML 2022, arXiv:2202.01017. Defaults from the authors' reference code
(github.com/AvivNavon/nash-mtl, `methods/weight_methods.py`): `update_weights_every=1` is our
`update_every`; `max_norm=1.0` is gradient-norm clipping in their training loop, ours comes
from `trainer.gradient_clip_val`; `optim_niter=20` counts their sequential-convex (cvxpy)
iterations and has no counterpart here.

The weights alpha > 0 solve (G G^T) alpha = 1/alpha (elementwise), the paper's condition.
The reference divides the Gramian by its Frobenius norm n but multiplies alpha by n inside
its log constraints, so its iterates converge to this same unscaled solution (checked against
the reference with ECOS): the direction sum_i alpha_i g_i is invariant to each task's
gradient scale. The solution is the unique minimiser of the strictly convex
f(a) = a^T M a / 2 - sum_i log a_i; we find it with damped Newton (f is self-concordant) on
M = G G^T / n and rescale, instead of cvxpy (cvxpy >= 1.6 no longer ships ECOS and the
reference silently falls back to another solver). A minimiser does not exist when 0 is in
the convex hull of the gradients (Pareto-stationary point): that, non-convergence or
non-finite input is a solver failure, and the step reuses the previous alpha (ones before
the first success), as the reference does when its solver fails.

The paper computes gradients of the shared parameters and found the shared-feature variant
hurt on QM9; `grad_source=features` is allowed but is not the paper's method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from mtl.weighting.base import GramianWeighting


def nash_alpha(
    gram: np.ndarray, start: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, bool, str]:
    """Solve M a = 1/a, a > 0, by damped Newton on a^T M a / 2 - sum log a from `start`.

    Converged when max_i |a_i (M a)_i - 1| <= tol (scale-free). Returns (a, converged,
    message)."""
    a = start.copy()

    def objective(x: np.ndarray) -> float:
        return 0.5 * float(x @ gram @ x) - float(np.log(x).sum())

    for it in range(max_iter):
        residual = gram @ a - 1.0 / a
        if not np.isfinite(residual).all():
            return a, False, f"non-finite residual at iteration {it}"
        if np.max(np.abs(a * residual)) <= tol:
            return a, True, ""
        hessian = gram + np.diag(1.0 / a**2)
        try:
            step = np.linalg.solve(hessian, -residual)
        except np.linalg.LinAlgError as err:
            return a, False, f"singular Newton system at iteration {it}: {err}"
        decrement = -float(residual @ step)  # squared Newton decrement
        t = 1.0
        shrinking = step < 0
        if shrinking.any():  # stay strictly inside a > 0
            t = min(1.0, 0.99 * float(np.min(-a[shrinking] / step[shrinking])))
        f0 = objective(a)
        while objective(a + t * step) > f0 - 0.25 * t * decrement:
            t *= 0.5
            if t < 1e-12:
                return a, False, f"line search stalled at iteration {it}"
        a = a + t * step
    residual = np.max(np.abs(a * (gram @ a) - 1.0))
    return a, False, f"no convergence in {max_iter} Newton steps (max |a Ma - 1| {residual:.2e})"


class NashMTL(GramianWeighting):
    """alpha with (G G^T) alpha = 1/alpha: each task's directional derivative g_i . d equals
    1/alpha_i, the bargaining solution's proportional fairness."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params", "features")
    source_note: ClassVar[str] = "The paper uses shared-parameter gradients."

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        max_iter: int = 100,
        tol: float = 1e-6,
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if int(max_iter) < 1 or not tol > 0:
            raise ValueError(f"need max_iter >= 1 and tol > 0, got {max_iter}, {tol}")
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        # the last solution: warm start for the next solve and the fallback on failure
        self.register_buffer("alpha", torch.ones(self.num_tasks))

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        k = gram.detach().double().cpu().numpy()
        previous = self.alpha.double().cpu().numpy()
        norm = float(np.linalg.norm(k)) if np.isfinite(k).all() else math.nan
        if not (math.isfinite(norm) and norm > 0):
            self.report_failure(f"Gramian is zero or non-finite (norm {norm}); reusing alpha")
            return self.alpha.to(gram)
        start = previous * math.sqrt(norm)  # the previous alpha in the units of M = K / n
        if not (np.isfinite(start).all() and (start > 0).all()):
            start = np.ones_like(start)
        solution, converged, message = nash_alpha(k / norm, start, self.tol, self.max_iter)
        if not converged:
            self.report_failure(f"{message}; reusing the previous alpha")
            return self.alpha.to(gram)
        self.alpha.copy_(torch.as_tensor(solution / math.sqrt(norm)))
        return self.alpha.to(gram)  # as stored, so a resumed run continues bit for bit
