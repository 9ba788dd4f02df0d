"""Image-level heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

POOLS = ("avg", "max", "avgmax")


class PooledHead(nn.Module):
    """Global pooling of one encoder stage, dropout, linear layer.

    `avgmax` concatenates average and max pooling: a small lesion barely moves the average
    of a feature map, but it does move the maximum.
    """

    def __init__(
        self,
        channels: Sequence[int],
        num_outputs: int,
        stage: int = -1,
        pool: str = "avgmax",
        hidden: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool '{pool}'; choose one of {POOLS}")
        if not -len(channels) <= stage < len(channels):
            raise ValueError(f"stage {stage} out of range for an encoder with {len(channels)}")
        self.stage = stage
        self.pool = pool
        width = channels[stage] * (2 if pool == "avgmax" else 1)
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_outputs)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[self.stage]
        if self.pool == "avg":
            pooled = x.mean(dim=(-2, -1))
        elif self.pool == "max":
            pooled = x.amax(dim=(-2, -1))
        else:
            pooled = torch.cat([x.mean(dim=(-2, -1)), x.amax(dim=(-2, -1))], dim=1)
        return self.mlp(pooled)
