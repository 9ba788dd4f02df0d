"""Image-level multi-class classification: pooled head, CE or focal loss, accuracy/balanced
accuracy/F1/AUROC and recall per class."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from mtl.dtypes import at_least_fp32
from mtl.losses import CompositeLoss, loss_terms
from mtl.metrics.class_recall import PerClassRecall
from mtl.tasks.base import (
    ClassLabelTask,
    TargetSpec,
    TaskConfigError,
    build_pooled_head,
    loss_class_weights,
)

CLASSIFICATION_LOSSES = ("ce", "focal")


class ClassificationTask(ClassLabelTask):
    """One label per image. `balanced_acc` is macro-averaged recall, the metric for imbalance.

    `loss`: `ce` or `focal` (`focal_gamma`; `focal_alpha` or `class_weights` as its alpha_t).
    `class_weights`: inverse / median from the training split's class shares, a list, or null.
    `guide_task` / `guide_class`: pool also under that segmentation task's predicted
    probability of that class (`mtl.models.guides`), when the run has the task; `guide_pool`
    is how (`avg`, `max`, `avgmax`; see `PooledHead`).
    """

    kind = "classification"
    min_classes = 2

    def __init__(
        self,
        name: str = "cls",
        target: str | None = None,
        num_classes: int | None = None,
        loss: str = "ce",
        class_weights: Sequence[float] | str | None = None,
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        focal_alpha: float | None = None,
        stages: Sequence[int] = (-1,),
        pool: str = "avgmax",
        hidden: int | None = None,
        dropout: float = 0.0,
        conv_channels: int | None = None,
        norm: str = "batch",
        guide_task: str | None = None,
        guide_class: str | None = None,
        guide_pool: str = "avg",
    ) -> None:
        super().__init__(name, target, num_classes, class_weights)
        if (guide_task is None) != (guide_class is None):
            raise TaskConfigError(
                f"tasks.{name}.guide_task and guide_class go together: set both (e.g. seg and "
                f"lesion) or neither, got {guide_task!r} and {guide_class!r}"
            )
        self._guide = None if guide_task is None else (str(guide_task), str(guide_class))
        from mtl.models.heads import check_pools  # lazy: mtl.models imports mtl.tasks

        try:  # here, before any data is made, not only when the head is built
            check_pools(pool=pool, guide_pool=guide_pool)
        except ValueError as err:
            raise TaskConfigError(f"tasks.{name}.{err}") from err
        if loss not in CLASSIFICATION_LOSSES:
            raise TaskConfigError(
                f"tasks.{name}.loss={loss!r}: a classification loss is one of "
                f"{list(CLASSIFICATION_LOSSES)}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise TaskConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.loss_name = loss
        self._loss_args = dict(label_smoothing=label_smoothing, focal_gamma=focal_gamma)
        self.focal_alpha = focal_alpha
        self._head_args = dict(
            stages=stages,
            pool=pool,
            hidden=hidden,
            dropout=dropout,
            conv_channels=conv_channels,
            norm=norm,
            guide_pool=guide_pool,
        )
        self.criterion: CompositeLoss | None = None

    @property
    def class_weights(self) -> Tensor | None:
        """The CE / focal class weights in use (after `bind`)."""
        return None if self.criterion is None else self.criterion.class_weights

    def bind(self, spec: TargetSpec) -> None:
        super().bind(spec)
        pixel, _ = loss_terms(self.loss_name)
        weights = loss_class_weights(self, spec, self.focal_alpha, pixel)
        try:
            self.criterion = CompositeLoss(
                self.loss_name, class_weights=weights, ignore_index=None, **self._loss_args
            )
        except ValueError as err:
            raise TaskConfigError(f"tasks.{self.name}: {err}") from err

    @property
    def guide(self) -> tuple[str, str] | None:
        return self._guide

    def build_head(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        decoder: Callable[..., nn.Module] | None = None,
        guided: bool = False,
    ) -> nn.Module:
        # image-level: pools encoder stages directly; the dense decoder is not used
        return build_pooled_head(
            self, channels, self._require_bound(), guided=guided, **self._head_args
        )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        self._require_bound()
        return self.criterion(output, target)

    def build_metrics(self) -> MetricCollection:
        n = self._require_bound()
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(n, average="micro"),
                "balanced_acc": MulticlassAccuracy(n, average="macro"),
                "f1": MulticlassF1Score(n, average="macro"),
                "auroc": MulticlassAUROC(n, average="macro"),
                "recall": PerClassRecall(self.class_names),
            },
            # accuracy micro/macro differ only by an argument: never merge their states
            compute_groups=False,
        )

    def metric_input(self, output: Tensor) -> Tensor:
        return at_least_fp32(output).softmax(dim=1)

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        names = {"acc": True, "balanced_acc": True, "f1": True, "auroc": True}
        if self.class_names:
            names.update(PerClassRecall.names_for(self.class_names))
        return names

    @property
    def primary_metric(self) -> str:
        return "balanced_acc"
