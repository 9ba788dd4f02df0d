"""Surface-normal angular errors over the whole split, with a bounded-memory median.

The mean and the `within_*` shares are exact (float64 sum and int64 counts over every valid
pixel). The median must also be over every valid pixel of the split: MTAN (and Nash-MTL, FAMO,
which reuse its code) average per-batch medians, which is not a median of anything and changes
with the batch size; LibMTL keeps every error, which is exact but grows with the split (72M
pixels, ~290 MB of float32, for NYUv2's test set) and would have to be gathered across ranks.
We keep a fixed histogram of the angle instead (`bin_width`-degree bins over [0, 180], int64
counts summed under DDP) and read the median off it with linear interpolation inside the bin
that holds it.

Error bound: the histogram's median bin is the bin holding the order statistic that
`torch.median` returns (the lower of the two middle values), and the interpolated estimate
lies in the same bin, so |estimate - torch.median(errors)| <= `bin_width` (0.01 deg by
default, the precision papers quote). In practice the error is far smaller, because the
errors are spread smoothly across each bin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from mtl.metrics.common import at_least_fp32, check_same_shape, safe_ratio

MAX_ANGLE = 180.0  # degrees: the largest angle between two directions (geometry, not a knob)


def angular_error_deg(pred: Tensor, target: Tensor, eps: float = 1e-12) -> Tensor:
    """Angle in degrees between B x 3 x H x W vector fields -> B x H x W.

    atan2(|p x t|, p . t) instead of acos(p . t): acos loses all precision near 0 deg (in
    float32 it cannot resolve angles below ~0.03 deg, bigger than the histogram's bins),
    atan2 is accurate at every angle and needs no clamping. A zero-length prediction has no
    direction and counts as the worst case, 180 deg.
    """
    p = pred / pred.norm(dim=1, keepdim=True).clamp_min(eps)
    t = target / target.norm(dim=1, keepdim=True).clamp_min(eps)
    cross = torch.linalg.cross(p, t, dim=1).norm(dim=1)
    dot = (p * t).sum(dim=1)
    angle = torch.rad2deg(torch.atan2(cross, dot))
    degenerate = pred.norm(dim=1) <= eps
    return torch.where(degenerate, torch.full_like(angle, MAX_ANGLE), angle)


def _threshold_name(threshold: float) -> str:
    return f"within_{threshold:g}"


class NormalMetrics(Metric):
    """`mean` and `median` angular error (degrees) and `within_<t>` (share of pixels with an
    error below t degrees, a fraction in [0, 1]) for each t in `thresholds`.

    Predictions need not be unit vectors (they are normalised); a target pixel whose vector is
    all zeros (or not finite) is invalid and left out.
    """

    is_differentiable = False
    higher_is_better = None  # errors fall, shares rise: see `directions`
    full_state_update = False

    def __init__(
        self,
        thresholds: Sequence[float] = (11.25, 22.5, 30.0),
        bin_width: float = 0.01,
        eps: float = 1e-12,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not 0 < bin_width <= MAX_ANGLE:
            raise ValueError(f"bin_width must be in (0, {MAX_ANGLE}] degrees, got {bin_width}")
        self.thresholds = tuple(float(t) for t in thresholds)
        self.bin_width = float(bin_width)
        self.eps = float(eps)
        # the guard keeps round-off (180 / 0.01 = 18000.000...1) from adding an empty bin
        self.num_bins = math.ceil(MAX_ANGLE / self.bin_width - 1e-9)
        self.add_state(
            "hist", default=torch.zeros(self.num_bins, dtype=torch.int64), dist_reduce_fx="sum"
        )
        self.add_state(
            "angle_sum", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state(
            "within",
            default=torch.zeros(len(self.thresholds), dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    @property
    def directions(self) -> Mapping[str, bool]:
        """Whether higher is better, per reported name (for `Task.higher_is_better`)."""
        out = {"mean": False, "median": False}
        out.update({_threshold_name(t): True for t in self.thresholds})
        return out

    def update(self, pred: Tensor, target: Tensor) -> None:
        check_same_shape(pred, target, type(self).__name__, channels=3)
        pred, target = at_least_fp32(pred), at_least_fp32(target)
        valid = torch.isfinite(target).all(dim=1) & (target != 0).any(dim=1)
        angle = angular_error_deg(pred, target, self.eps)[valid]
        self.angle_sum += angle.sum(dtype=torch.float64)
        index = torch.floor(angle / self.bin_width).long().clamp_(0, self.num_bins - 1)
        self.hist += torch.bincount(index, minlength=self.num_bins)
        thresholds = torch.tensor(self.thresholds, dtype=angle.dtype, device=angle.device)
        self.within += (angle.unsqueeze(0) < thresholds.unsqueeze(1)).sum(dim=1)

    def histogram_median(self) -> Tensor:
        """Median of the accumulated angles, interpolated linearly inside its bin."""
        count = self.hist.sum()
        if count == 0:
            return torch.tensor(float("nan"), dtype=torch.float64, device=self.hist.device)
        cumulative = self.hist.cumsum(0)
        half = count.double() / 2
        # first bin whose cumulative count reaches half: it holds the lower middle value
        k = torch.searchsorted(cumulative.double(), half.reshape(1)).squeeze(0)
        below = cumulative[k - 1].double() if k > 0 else half.new_zeros(())
        fraction = (half - below) / self.hist[k].double()
        return (k.double() + fraction) * self.bin_width

    def compute(self) -> dict[str, Tensor]:
        count = self.hist.sum()
        out = {
            "mean": safe_ratio(self.angle_sum, count),
            "median": self.histogram_median(),
        }
        for index, threshold in enumerate(self.thresholds):
            out[_threshold_name(threshold)] = safe_ratio(self.within[index], count)
        return {key: value.float() for key, value in out.items()}
