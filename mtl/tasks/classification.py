"""Image-level multi-class classification: pooled head, CE, accuracy/balanced accuracy/F1/AUROC."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from mtl.dtypes import at_least_fp32
from mtl.models.heads import PooledHead
from mtl.tasks.base import ClassLabelTask, TargetSpec, TaskConfigError, as_weight_tensor


class ClassificationTask(ClassLabelTask):
    """One label per image. `balanced_acc` is macro-averaged recall, the metric for imbalance."""

    kind = "classification"
    min_classes = 2

    def __init__(
        self,
        name: str = "cls",
        target: str | None = None,
        num_classes: int | None = None,
        class_weights: Sequence[float] | str | None = None,
        label_smoothing: float = 0.0,
        stages: Sequence[int] = (-1,),
        pool: str = "avgmax",
        hidden: int | None = None,
        dropout: float = 0.0,
        conv_channels: int | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__(name, target, num_classes)
        if not 0.0 <= label_smoothing < 1.0:
            raise TaskConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self._class_weights = class_weights
        self._head_args = dict(
            stages=stages,
            pool=pool,
            hidden=hidden,
            dropout=dropout,
            conv_channels=conv_channels,
            norm=norm,
        )
        self.register_buffer("class_weights", None, persistent=False)

    def bind(self, spec: TargetSpec) -> None:
        super().bind(spec)
        self.class_weights = as_weight_tensor(
            self._class_weights, spec, f"tasks.{self.name}.class_weights"
        )

    def build_head(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        decoder: Callable[..., nn.Module] | None = None,
    ) -> nn.Module:
        # image-level: pools encoder stages directly; the dense decoder is not used
        return PooledHead(channels, self._require_bound(), **self._head_args)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            at_least_fp32(output),
            target.long(),
            weight=self.class_weights,
            label_smoothing=self.label_smoothing,
        )

    def build_metrics(self) -> MetricCollection:
        n = self._require_bound()
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(n, average="micro"),
                "balanced_acc": MulticlassAccuracy(n, average="macro"),
                "f1": MulticlassF1Score(n, average="macro"),
                "auroc": MulticlassAUROC(n, average="macro"),
            },
            # accuracy micro/macro differ only by an argument: never merge their states
            compute_groups=False,
        )

    def metric_input(self, output: Tensor) -> Tensor:
        return at_least_fp32(output).softmax(dim=1)

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        return {"acc": True, "balanced_acc": True, "f1": True, "auroc": True}

    @property
    def primary_metric(self) -> str:
        return "balanced_acc"
