"""Multi-label scores in one metric: `map` (mean average precision) and macro `f1`.

Why a wrapper rather than torchmetrics' `MultilabelAveragePrecision` and `MultilabelF1Score`
used directly: (1) they reject our float32 0/1 targets (the `multilabel` contract), (2)
their macro mAP counts a label without any positive in the split as AP 0 (it is undefined),
which drags the mean down by a share that depends on the split, and (3) one metric returning a
dict matches the other dense-task metrics. Labels without positives are left out of `map`;
labels with no positive and no predicted positive are left out of `f1` (F1 = 0/0), as
segmentation leaves absent classes out of the mean.

Predictions and targets are kept (concatenated, gathered under DDP) because average precision
needs every score; a B x C state is small for classification-sized data.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_average_precision
from torchmetrics.utilities import dim_zero_cat

from mtl.metrics.common import at_least_fp32, safe_ratio


class MultilabelMetrics(Metric):
    """`map` and macro `f1` (at `threshold`) from probabilities B x C and 0/1 targets B x C."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_labels: int, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_labels < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.num_labels = int(num_labels)
        self.threshold = float(threshold)
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    @property
    def directions(self) -> Mapping[str, bool]:
        return {"map": True, "f1": True}

    def update(self, prob: Tensor, target: Tensor) -> None:
        if prob.shape != target.shape or prob.dim() != 2 or prob.shape[1] != self.num_labels:
            raise ValueError(
                f"MultilabelMetrics expects prob and target of shape B x {self.num_labels}, got "
                f"{tuple(prob.shape)} and {tuple(target.shape)}"
            )
        self.preds.append(at_least_fp32(prob).detach())
        self.targets.append(target.round().long())

    def compute(self) -> dict[str, Tensor]:
        if isinstance(self.preds, list) and len(self.preds) == 0:  # a tensor once synced
            nan = torch.tensor(float("nan"), device=self.device)
            return {"map": nan, "f1": nan.clone()}
        prob, target = dim_zero_cat(self.preds), dim_zero_cat(self.targets)
        # AP only where it is defined (torchmetrics would warn and count the others as 0)
        defined = (target.sum(0) > 0).nonzero().flatten().tolist()
        ap = torch.tensor(
            [binary_average_precision(prob[:, j], target[:, j]).item() for j in defined]
            or [float("nan")],
            dtype=torch.float64,
            device=prob.device,
        )
        pred = prob > self.threshold
        tp = (pred & (target == 1)).sum(0)
        fp = (pred & (target == 0)).sum(0)
        fn = (~pred & (target == 1)).sum(0)
        f1 = safe_ratio(2 * tp, 2 * tp + fp + fn)
        return {"map": ap.nanmean().float(), "f1": f1.nanmean().float()}
