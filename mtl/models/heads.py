"""Image-level heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtl.dtypes import at_least_fp32
from mtl.models.blocks import ConvNormAct

POOLS = ("avg", "max", "avgmax")


def global_pool(x: Tensor, pool: str) -> Tensor:
    if pool == "avg":
        return x.mean(dim=(-2, -1))
    if pool == "max":
        return x.amax(dim=(-2, -1))
    return torch.cat([x.mean(dim=(-2, -1)), x.amax(dim=(-2, -1))], dim=1)


class PooledHead(nn.Module):
    """Global pooling of one or more encoder stages, LayerNorm, dropout, linear layer(s).

    Small lesions are resolved only in the shallower stages (the deepest one has stride 16 or
    32), so pooling several stages lets the head see them; `avgmax` adds max pooling because a
    small lesion barely moves a feature map's average but does move its maximum. The
    LayerNorm puts stages of different scale on one footing. `conv_channels` adds a
    task-specific conv layer per stage before pooling, so the head can build its own
    detectors on the shared features instead of reading them as they are.
    """

    def __init__(
        self,
        channels: Sequence[int],
        num_outputs: int,
        stages: Sequence[int] = (-1,),
        pool: str = "avgmax",
        hidden: int | None = None,
        dropout: float = 0.0,
        conv_channels: int | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool '{pool}'; choose one of {POOLS}")
        stages = list(stages)
        bad = [s for s in stages if not -len(channels) <= s < len(channels)]
        if not stages or bad:
            raise ValueError(
                f"head stages {stages} must be non-empty and index the encoder's "
                f"{len(channels)} stages (0..{len(channels) - 1} or negative)"
            )
        self.stages = stages
        self.pool = pool
        if conv_channels:
            self.convs = nn.ModuleList(
                [ConvNormAct(channels[s], conv_channels, norm=norm) for s in stages]
            )
            widths = [conv_channels] * len(stages)
        else:
            self.convs = None
            widths = [channels[s] for s in stages]
        width = sum(widths) * (2 if pool == "avgmax" else 1)
        layers: list[nn.Module] = [nn.LayerNorm(width)]
        if hidden:
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_outputs)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        maps = [features[s] for s in self.stages]
        if self.convs is not None:
            maps = [conv(x) for conv, x in zip(self.convs, maps, strict=True)]
        # pool in >= fp32 (bf16 sums over many pixels lose precision); fp64 runs stay fp64
        pooled = [global_pool(at_least_fp32(x), self.pool) for x in maps]
        return self.mlp(torch.cat(pooled, dim=1))
