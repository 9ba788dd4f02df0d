"""Image-level heads."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.dtypes import at_least_fp32
from mtl.models.blocks import ConvNormAct

POOLS = ("avg", "max", "avgmax")
GUIDE_SCALARS = 2  # size and peak of a guide map (PooledHead)


def check_pools(**pools: str) -> None:
    """Refuse a pooling mode that is not one of `POOLS`, naming its setting."""
    for key, value in pools.items():
        if value not in POOLS:
            raise ValueError(f"{key}={value!r} is unknown; choose one of {list(POOLS)}")


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

    `guided=True` adds pooling under a guide map `g` in [0, 1] (another task's probability
    of a region, e.g. segmentation's lesion class, see `mtl.models.guides`): per stage the
    g-weighted mean of the features (`guide_pool=avg`), their maximum after weighting by g
    (`max`) or both (`avgmax`), plus the region's size (log of mean g) and peak (max g).
    The head then reads what lies inside the region and how large it is, instead of searching
    the whole image for it. The maximum matters when the label is that of the worst region
    (a slice is malignant when one of its lesions is): a mean over one malignant and two
    benign lesions dilutes the malignant one, the maximum keeps its strongest response.
    (Letting size and peak skip the LayerNorm made the head leave chance a little earlier but
    scored lower on test on two seeds, so all of it is normalised.)
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
        guided: bool = False,
        guide_eps: float = 1e-4,
        guide_pool: str = "avg",
    ) -> None:
        super().__init__()
        check_pools(pool=pool, guide_pool=guide_pool)
        stages = list(stages)
        bad = [s for s in stages if not -len(channels) <= s < len(channels)]
        if not stages or bad:
            raise ValueError(
                f"stages={stages} must be non-empty and index the encoder's {len(channels)} "
                f"stages (0..{len(channels) - 1}, or -{len(channels)}..-1 from the deepest)"
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
        if not guide_eps > 0:
            raise ValueError(f"guide_eps={guide_eps} must be > 0 (it bounds log(size))")
        self.guided = guided
        self.guide_eps = guide_eps
        self.guide_pool = guide_pool
        if guided:  # g-weighted pools per stage, the region's size and peak
            width += sum(widths) * (2 if guide_pool == "avgmax" else 1) + GUIDE_SCALARS
        layers: list[nn.Module] = [nn.LayerNorm(width)]
        if hidden:
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_outputs)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, features: Sequence[Tensor], guide: Tensor | None = None) -> Tensor:
        if self.guided != (guide is not None):
            raise ValueError(
                "a guided head needs a guide map and an unguided one takes none "
                f"(guided={self.guided}, guide given: {guide is not None})"
            )
        maps = [features[s] for s in self.stages]
        if self.convs is not None:
            maps = [conv(x) for conv, x in zip(self.convs, maps, strict=True)]
        # pool in >= fp32 (bf16 sums over many pixels lose precision); fp64 runs stay fp64
        maps = [at_least_fp32(x) for x in maps]
        pooled = [global_pool(x, self.pool) for x in maps]
        if guide is not None:
            under, scalars = self._guided_pool(maps, guide)
            pooled += [*under, scalars]
        return self.mlp(torch.cat(pooled, dim=1))

    def _guided_pool(self, maps: Sequence[Tensor], guide: Tensor) -> tuple[list[Tensor], Tensor]:
        """Every map pooled under g (`guide_pool`: the g-weighted mean, the maximum of g * x,
        or both), and (size, peak) of g, both in [0, 1]: size is the log of g's share of the
        image, mapped from [guide_eps, 1] to [0, 1]."""
        if guide.dim() != 4 or guide.shape[1] != 1:
            raise ValueError(f"guide map must be (batch, 1, H, W), got {tuple(guide.shape)}")
        guide = guide.to(maps[0].dtype)
        under = []
        for x in maps:
            g = F.adaptive_avg_pool2d(guide, x.shape[-2:])
            weighted = x * g
            pools = []
            if self.guide_pool in ("avg", "avgmax"):
                pools.append(weighted.sum(dim=(-2, -1)) / (g.sum(dim=(-2, -1)) + self.guide_eps))
            if self.guide_pool in ("max", "avgmax"):
                pools.append(weighted.amax(dim=(-2, -1)))
            under.append(torch.cat(pools, dim=1))
        floor = math.log(self.guide_eps)
        size = 1.0 - torch.log(guide.mean(dim=(-2, -1)) + self.guide_eps) / floor
        return under, torch.cat([size, guide.amax(dim=(-2, -1))], dim=1)
