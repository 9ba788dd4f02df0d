"""Aligned-MTL: align the principal components of the gradient matrix.

Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
Learning", CVPR 2023, arXiv:2305.19000. The gradient matrix is replaced by one with the same
singular vectors and all singular values equal to the smallest nonzero one (`scale_mode=min`),
i.e. weights w = B 1 with B = sqrt(lambda_min) M^{-1/2} on the span of the gradients
(M = G G^T); rank is cut at the reference's tolerance max(lambda) T eps.

Uses torchjd's `AlignedMTLWeighting`. Defaults from the authors' reference code
(github.com/SamsungLabs/MTL, `ProcrustesSolver`, as ported by LibMTL): `scale_mode=min` and
the sum of the aligned task gradients (preference vector of ones; torchjd defaults to the mean,
1/T the size). The paper has an -UB variant on shared features, so both sources are allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchjd.aggregation import AlignedMTLWeighting

from mtl.weighting.base import GramianWeighting

SCALE_MODES = ("min", "median", "rmse")


class AlignedMTL(GramianWeighting):
    """Weights that make the task components of the update orthogonal and equally large."""

    grad_sources: ClassVar[tuple[str, ...]] = ("params", "features")
    source_note: ClassVar[str] = "Aligned-MTL-UB (features) is the paper's efficient variant."

    def __init__(
        self,
        task_names: Sequence[str],
        *,
        scale_mode: str = "min",
        **common: Any,
    ) -> None:
        super().__init__(task_names, **common)
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got '{scale_mode}'")
        self.scale_mode = scale_mode

    def weights_from_gramian(self, gram: Tensor) -> Tensor:
        m = gram.detach().double()
        weighting = AlignedMTLWeighting(
            pref_vector=torch.ones_like(m[0]), scale_mode=self.scale_mode
        )
        return weighting(m).to(gram)
