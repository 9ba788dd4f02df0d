"""Image-level multi-label classification (e.g. which object classes a scene contains)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from mtl.dtypes import at_least_fp32
from mtl.metrics import MultilabelMetrics
from mtl.tasks.base import ClassLabelTask, TargetSpec, TaskConfigError, build_pooled_head


class MultiLabelTask(ClassLabelTask):
    """Pooled head, one logit per class, BCE; `map` (macro average precision over classes with
    a positive in the split) and macro `f1`.

    `pos_weight: balanced` weights each class's positives by (1 - p) / p of its training
    frequency p, so rare classes are not ignored.
    """

    kind = "multilabel"

    def __init__(
        self,
        name: str = "objects",
        target: str | None = None,
        num_classes: int | None = None,
        pos_weight: Sequence[float] | str | None = None,
        threshold: float = 0.5,
        stages: Sequence[int] = (-1,),
        pool: str = "avgmax",
        hidden: int | None = None,
        dropout: float = 0.0,
        conv_channels: int | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__(name, target, num_classes)
        if not 0.0 < threshold < 1.0:
            raise TaskConfigError(f"tasks.{name}.threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self._pos_weight = pos_weight
        self._head_args = dict(
            stages=stages,
            pool=pool,
            hidden=hidden,
            dropout=dropout,
            conv_channels=conv_channels,
            norm=norm,
        )
        self.register_buffer("pos_weight", None, persistent=False)

    def bind(self, spec: TargetSpec) -> None:
        super().bind(spec)
        n = self._require_bound()
        if self._pos_weight is None:
            return
        if isinstance(self._pos_weight, str):
            if self._pos_weight != "balanced" or spec.class_frequencies is None:
                raise TaskConfigError(
                    f"tasks.{self.name}.pos_weight must be a list, null, or 'balanced' (which "
                    f"needs class frequencies from the data), got {self._pos_weight!r}"
                )
            p = torch.as_tensor(spec.class_frequencies, dtype=torch.float32).clamp(1e-3, 1 - 1e-3)
            self.pos_weight = (1 - p) / p
            return
        weights = torch.as_tensor(list(self._pos_weight), dtype=torch.float32)
        if weights.numel() != n:
            raise TaskConfigError(
                f"tasks.{self.name}.pos_weight has {weights.numel()} entries but the target has "
                f"{n} classes"
            )
        self.pos_weight = weights

    def build_head(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        decoder: Callable[..., nn.Module] | None = None,
    ) -> nn.Module:
        return build_pooled_head(self, channels, self._require_bound(), **self._head_args)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            at_least_fp32(output),
            target.to(at_least_fp32(output).dtype),
            pos_weight=self.pos_weight,
        )

    def build_metrics(self) -> MetricCollection:
        n = self._require_bound()
        return MetricCollection(
            {"objects": MultilabelMetrics(n, threshold=self.threshold)}, compute_groups=False
        )

    def metric_input(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        return {"map": True, "f1": True}

    @property
    def primary_metric(self) -> str:
        return "map"
