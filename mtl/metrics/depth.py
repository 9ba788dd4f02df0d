"""Depth errors over the whole split: absolute, relative, RMSE and delta accuracies.

Every score is *pixel-weighted over the split*: states are sums over all valid pixels
(float64 for the error sums, int64 for the counts), all-reduced under DDP, and divided once in
`compute()`. MTAN and the code derived from it (Nash-MTL, FAMO) instead average per-batch
means with equal weight per batch, so a batch with few valid pixels counts as much as a full
one and the result depends on the batch size and the order of the data; LibMTL's NYUv2 code
weights each batch mean by its valid-pixel count, which is the pixel-weighted mean again. We
choose the pixel-weighted form because it is a property of the predictions alone (the same for
any batch size, any number of GPUs), and it is what LibMTL reports. The two forms agree when
every batch holds the same number of valid pixels and drift apart as the counts differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from mtl.metrics.common import at_least_fp32, check_same_shape, safe_ratio


class DepthMetrics(Metric):
    """`abs_err`, `rel_err`, `rmse` and `delta{k}` for each power k in `delta_powers`.

    Valid pixels are those whose target is finite and > 0 (0 marks missing depth). With
    t the target and p the prediction, over the valid pixels of the split:
    abs_err = mean |p - t|, rel_err = mean |p - t| / t, rmse = sqrt(mean (p - t)^2) and
    delta{k} = share of pixels with max(p / t, t / p) < delta_base ** k.
    The delta ratio clamps p to `eps` first: a prediction <= 0 then counts as a (huge) miss
    instead of producing a negative or infinite ratio; abs/rel/rmse use p as it is, so a
    negative depth is penalised by its true distance.
    """

    is_differentiable = False
    higher_is_better = None  # errors fall, accuracies rise: see `directions`
    full_state_update = False

    def __init__(
        self,
        delta_base: float = 1.25,
        delta_powers: Sequence[int] = (1,),
        eps: float = 1e-6,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if delta_base <= 1:
            raise ValueError(f"delta_base must be > 1, got {delta_base}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.delta_powers = tuple(int(k) for k in delta_powers)
        self.delta_base = float(delta_base)
        self.eps = float(eps)
        zero = torch.zeros((), dtype=torch.float64)
        self.add_state("abs_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("rel_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("sq_sum", default=zero.clone(), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state(
            "within",
            default=torch.zeros(len(self.delta_powers), dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    @property
    def directions(self) -> Mapping[str, bool]:
        """Whether higher is better, per reported name (for `Task.higher_is_better`)."""
        out = {"abs_err": False, "rel_err": False, "rmse": False}
        out.update({f"delta{k}": True for k in self.delta_powers})
        return out

    def update(self, pred: Tensor, target: Tensor) -> None:
        check_same_shape(pred, target, type(self).__name__, channels=1)
        pred, target = at_least_fp32(pred), at_least_fp32(target)
        valid = torch.isfinite(target) & (target > 0)
        p, t = pred[valid], target[valid]
        diff = (p - t).abs()
        self.abs_sum += diff.sum(dtype=torch.float64)
        self.rel_sum += (diff / t).sum(dtype=torch.float64)
        self.sq_sum += diff.double().square().sum()
        self.count += valid.sum()
        p_pos = p.clamp_min(self.eps)
        ratio = torch.maximum(p_pos / t, t / p_pos)
        thresholds = torch.tensor(
            [self.delta_base**k for k in self.delta_powers], dtype=ratio.dtype, device=ratio.device
        )
        self.within += (ratio.unsqueeze(0) < thresholds.unsqueeze(1)).sum(dim=1)

    def compute(self) -> dict[str, Tensor]:
        out = {
            "abs_err": safe_ratio(self.abs_sum, self.count),
            "rel_err": safe_ratio(self.rel_sum, self.count),
            "rmse": safe_ratio(self.sq_sum, self.count).sqrt(),
        }
        for index, k in enumerate(self.delta_powers):
            out[f"delta{k}"] = safe_ratio(self.within[index], self.count)
        return {key: value.float() for key, value in out.items()}
