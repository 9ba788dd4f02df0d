"""IMTL-G: impartial gradient weighting (equal projections onto every task's direction).

Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial Multi-task Learning",
ICLR 2021 (openreview.net/forum?id=IMPnRXEWpvr; no arXiv version). The gradient part, IMTL-G:
weights alpha with sum 1 such that d = sum_i alpha_i g_i has the same projection d . u_i onto
every unit task gradient u_i = g_i / ||g_i||. The paper has no hyperparameters and computes
it on the gradients of the shared features (so both sources are allowed).

Uses torchjd's `IMTLGWeighting` (alpha proportional to pinv(M) ||g||, M = G G^T), which equals
the paper's closed form when the gradients are independent; for dependent ones (T > D) it is
torchjd's least-squares generalisation, and equal projections may not be attainable.
The Gramian is divided by its trace first (the weights do not change) so torchjd's absolute
1e-12 threshold is scale-free. The paper's IMTL-L (learned loss scales) is not included.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from torchjd.aggregation import IMTLGWeighting

from mtl.weighting.base import GramianWeighting


class IMTL(GramianWeighting):
    """IMTL-G weights. When torchjd finds none (zeros, e.g. for two opposite gradients of
    equal norm) that is reported and the step averages (1/T)."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params", "features")
    source_note: ClassVar[str] = "The paper computes IMTL-G on shared-feature gradients."

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        m = gram.detach().double()
        trace = m.diagonal().sum()
        weights = IMTLGWeighting()(m / trace) if trace > 0 else torch.zeros_like(m[0])
        if not (torch.isfinite(weights).all() and weights.abs().sum() > 0):
            self.report_failure("no weights with equal projections (sum of pinv(M) d is 0)")
            weights = torch.full_like(m[0], 1.0 / m.shape[0])
        return weights.to(gram)
