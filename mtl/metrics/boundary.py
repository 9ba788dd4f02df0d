"""Boundary F-score with a pixel tolerance, at a fixed threshold and at the dataset-best one.

Matching: a predicted boundary pixel is correct if a ground-truth boundary pixel lies within
`tolerance` pixels of it in the chessboard (L-infinity) distance, i.e. inside the
(2 tolerance + 1)^2 square around it; recall is symmetric (a ground-truth boundary pixel is found
if a predicted one lies within the same square). Both are computed by dilating the other map
with a max-pool, so a batch costs two pooling passes per threshold. This is more lenient than
the BSDS benchmark, which matches pixels one-to-one (a thick prediction along a thin ground
truth is not penalised here) and uses a Euclidean radius of 0.0075 x the image diagonal
(about 3.6 px at NYUv2's 288 x 384: choose `tolerance` accordingly).

Counts (matched predictions, predictions, matched ground truth, ground truth) are summed over
the split for every threshold, so precision, recall and F1 are split-level and the
dataset-best threshold (ODS, "optimal dataset scale") is chosen on the summed counts, never
per image or per batch. Pixels whose target is `ignore_index` are removed from both maps
before matching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mtl.metrics.common import at_least_fp32, check_same_shape, safe_ratio

# columns of the per-threshold count state
MATCHED_PRED, PRED, MATCHED_TRUE, TRUE = range(4)


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Chessboard dilation of a B x 1 x H x W boolean map (max-pool; -inf padding at borders)."""
    if radius == 0:
        return mask
    kernel = 2 * radius + 1
    return F.max_pool2d(mask.float(), kernel, stride=1, padding=radius) > 0


def f1_from_counts(counts: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Precision, recall and F1 from `... x 4` counts; 0 where undefined (nothing predicted or
    no boundary in the truth), as torchmetrics' `zero_division=0`, so a run that predicts no
    boundary scores 0 instead of NaN."""
    precision = safe_ratio(counts[..., MATCHED_PRED], counts[..., PRED]).nan_to_num(0.0)
    recall = safe_ratio(counts[..., MATCHED_TRUE], counts[..., TRUE]).nan_to_num(0.0)
    f1 = safe_ratio(2 * precision * recall, precision + recall).nan_to_num(0.0)
    return precision, recall, f1


class BoundaryFScore(Metric):
    """`f1`, `precision`, `recall` at `threshold` and, with `ods_thresholds`, `ods_f1` and
    `ods_threshold` (the threshold of that list with the best split-level F1; `threshold` is
    a candidate only if it is in the list).

    `update(prob, target)`: prob B x 1 x H x W boundary probabilities (a pixel is a predicted
    boundary where prob > threshold, as torchmetrics binarises), target B x 1 x H x W with 1 on
    boundaries, 0 elsewhere and `ignore_index` where unknown.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        tolerance: int = 2,
        threshold: float = 0.5,
        ods_thresholds: Sequence[float] | None = None,
        ignore_index: int | None = 255,  # mtl.data.targets.IGNORE_INDEX (not imported: cycle)
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
        self.tolerance = int(tolerance)
        self.threshold = float(threshold)
        self.ignore_index = ignore_index
        ods = sorted({float(t) for t in ods_thresholds or ()})
        self.with_ods = bool(ods)
        # one count row per distinct threshold; the fixed one may also be in the ODS list
        self.thresholds = tuple(sorted({self.threshold, *ods}))
        self.fixed_index = self.thresholds.index(self.threshold)
        self.ods_indices = [self.thresholds.index(t) for t in ods]
        self.add_state(
            "counts",
            default=torch.zeros(len(self.thresholds), 4, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    @property
    def directions(self) -> Mapping[str, bool]:
        """Whether higher is better, per reported F-score name (for `Task.higher_is_better`)."""
        names = ["f1", "precision", "recall", *(["ods_f1"] if self.with_ods else [])]
        return dict.fromkeys(names, True)

    def update(self, prob: Tensor, target: Tensor) -> None:
        check_same_shape(prob, target, type(self).__name__, channels=1)
        prob = at_least_fp32(prob)
        valid = (
            target != self.ignore_index
            if self.ignore_index is not None
            else torch.ones_like(target, dtype=torch.bool)
        )
        truth = (target == 1) & valid
        near_truth = dilate(truth, self.tolerance)
        num_true = truth.sum()
        rows = []
        for threshold in self.thresholds:
            pred = (prob > threshold) & valid
            matched_pred = (pred & near_truth).sum()
            matched_true = (truth & dilate(pred, self.tolerance)).sum()
            rows.append(torch.stack([matched_pred, pred.sum(), matched_true, num_true]))
        self.counts += torch.stack(rows)

    def compute(self) -> dict[str, Tensor]:
        precision, recall, f1 = f1_from_counts(self.counts)
        i = self.fixed_index
        out = {"f1": f1[i], "precision": precision[i], "recall": recall[i]}
        if self.with_ods:
            candidates = f1[self.ods_indices]
            best = self.ods_indices[int(torch.argmax(candidates))]  # lowest threshold on ties
            out["ods_f1"] = f1[best]
            out["ods_threshold"] = torch.tensor(self.thresholds[best], device=f1.device)
        return {key: value.float() for key, value in out.items()}
