"""Fixed per-task loss weights from config: total = sum_i alpha_i L_i."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtl.weighting.base import LossWeighting


class FixedWeighting(LossWeighting):
    """alpha_i from config (`weighting.weights: {seg: 1.0, cls: 0.5}`); tasks left out get
    `default`."""

    def __init__(
        self,
        task_names: Sequence[str],
        weights: Mapping[str, float] | None = None,
        default: float = 1.0,
    ) -> None:
        super().__init__(task_names)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.task_names))
        if unknown:
            raise ValueError(
                f"weighting.weights names tasks {unknown} that are not in this run; "
                f"the tasks are {self.task_names}"
            )
        values = [float(weights.get(name, default)) for name in self.task_names]
        if any(v < 0 or not math.isfinite(v) for v in values):
            given = dict(zip(self.task_names, values, strict=True))
            raise ValueError(f"loss weights must be finite and >= 0, got {given}")
        self.register_buffer("alpha", torch.tensor(values, dtype=torch.float32))

    def weights(self, losses: Tensor) -> Tensor:
        return self.alpha.to(losses.dtype)
