"""UPGrad: average of the task gradients, each projected onto the dual cone of all of them.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024, arXiv:2406.16232.
The update (1/T) sum_i pi(g_i), with pi the projection onto {d : d . g_j >= 0 for all j},
conflicts with no task and equals the mean when nothing conflicts. Uses torchjd's
`UPGradWeighting` (the authors' library, which is the reference implementation) with its
defaults: preference vector 1/T (so the update is 1/T the size of the summed-loss gradient)
and its quadprog projector, which normalises the Gramian by its trace and adds `reg_eps` to
the diagonal (`norm_eps=1e-4`, `reg_eps=1e-4`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchjd.aggregation import UPGradWeighting
from torchjd.linalg import QuadprogProjector

from mtl.weighting.base import GramianWeighting


class UPGrad(GramianWeighting):
    """If the QP solver fails, the failure is reported and the step uses the mean (1/T)."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params",)
    source_note: ClassVar[str] = (
        "The paper projects the Jacobian of the shared parameters; non-conflict with every "
        "task is a property of that space."
    )

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        norm_eps: float = 1e-4,
        reg_eps: float = 1e-4,
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if norm_eps < 0 or reg_eps < 0:
            raise ValueError(f"norm_eps and reg_eps must be >= 0, got {norm_eps}, {reg_eps}")
        self.norm_eps = float(norm_eps)
        self.reg_eps = float(reg_eps)

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        m = gram.detach().double()
        projector = QuadprogProjector(norm_eps=self.norm_eps, reg_eps=self.reg_eps)
        try:
            weights = UPGradWeighting(projector=projector)(m)
        except ValueError as err:  # quadprog: infeasible / not positive definite
            self.report_failure(f"quadprog: {err}; using the mean")
            weights = torch.full_like(m[0], 1.0 / m.shape[0])
        if not torch.isfinite(weights).all():
            self.report_failure("non-finite weights; using the mean")
            weights = torch.full_like(m[0], 1.0 / m.shape[0])
        return weights.to(gram)
