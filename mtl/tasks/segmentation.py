"""Semantic segmentation: a decoder head, Dice + CE by default (or focal / Tversky terms),
Dice/IoU/pixel accuracy and, for lesion classes, lesion-wise detection recall."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn
from torchmetrics import MetricCollection

from mtl.losses import CompositeLoss, loss_terms
from mtl.metrics import LesionRecall, SegmentationMetrics
from mtl.tasks.base import (
    ClassLabelTask,
    TargetSpec,
    TaskConfigError,
    build_dense_head,
    loss_class_weights,
)


class SegmentationTask(ClassLabelTask):
    """Per-pixel classification; class names and count come from the data unless given.

    `loss` names the terms (`mtl.losses.composite`): `ce_weight` weighs the CE / focal term,
    `dice_weight` the Dice / Tversky term. `class_weights` (CE / focal): inverse / median from
    the training split's pixel shares, a list, or null. `lesion_classes`: class names scored
    by lesion-wise detection recall (`lesion_recall`, `lesion_recall_<class>`).
    """

    kind = "segmentation"

    def __init__(
        self,
        name: str = "seg",
        target: str | None = None,
        num_classes: int | None = None,
        ignore_index: int = 255,
        loss: str = "dice_ce",
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        class_weights: Sequence[float] | str | None = None,
        label_smoothing: float = 0.0,
        focal_gamma: float = 2.0,
        focal_alpha: float | None = None,
        tversky_alpha: float = 0.3,
        tversky_beta: float = 0.7,
        batch_dice: bool = True,
        decoder: Callable[..., nn.Module] | None = None,
        background: bool = True,
        lesion_classes: Sequence[str] | None = None,
        lesion_min_overlap: float = 0.0,
        lesion_connectivity: int = 2,
    ) -> None:
        super().__init__(name, target, num_classes, class_weights)
        try:
            loss_terms(loss)
        except ValueError as err:
            raise TaskConfigError(f"tasks.{name}.loss: {err}") from err
        self.ignore_index = ignore_index
        self.background = background
        self.loss_name = loss
        self.focal_alpha = focal_alpha
        self._loss_args = dict(
            dice_weight=dice_weight,
            ce_weight=ce_weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            focal_gamma=focal_gamma,
            tversky_alpha=tversky_alpha,
            tversky_beta=tversky_beta,
            batch_dice=batch_dice,
            include_background=not background,
        )
        self.lesion_classes = tuple(lesion_classes or ())
        self._lesion_args = dict(
            min_overlap=lesion_min_overlap,
            connectivity=lesion_connectivity,
            ignore_index=ignore_index,
        )
        try:
            LesionRecall.check_options(lesion_min_overlap, lesion_connectivity)
        except ValueError as err:
            raise TaskConfigError(f"tasks.{name}: {err}") from err
        self.decoder_factory = decoder
        self.criterion: CompositeLoss | None = None

    def bind(self, spec: TargetSpec) -> None:
        super().bind(spec)
        unknown = [c for c in self.lesion_classes if c not in (self.class_names or ())]
        if unknown:
            raise TaskConfigError(
                f"tasks.{self.name}.lesion_classes {unknown} are not classes of target "
                f"'{self.target}': {list(self.class_names or ())}"
            )
        pixel, _ = loss_terms(self.loss_name)
        weights = loss_class_weights(self, spec, self.focal_alpha, pixel)
        try:
            self.criterion = CompositeLoss(self.loss_name, class_weights=weights, **self._loss_args)
        except ValueError as err:
            raise TaskConfigError(f"tasks.{self.name}: {err}") from err

    def build_head(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        decoder: Callable[..., nn.Module] | None = None,
    ) -> nn.Module:
        return build_dense_head(
            self, self.decoder_factory, decoder, channels, reductions, self._require_bound()
        )

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        self._require_bound()
        return self.criterion(output, target)

    def build_metrics(self) -> MetricCollection:
        self._require_bound()
        metrics = {
            "seg": SegmentationMetrics(
                self.class_names,
                ignore_index=self.ignore_index,
                include_background=not self.background,
            )
        }
        if self.lesion_classes:
            names = self.class_names or ()
            metrics["lesions"] = LesionRecall(
                [names.index(c) for c in self.lesion_classes],
                self.lesion_classes,
                **self._lesion_args,
            )
        return MetricCollection(metrics, compute_groups=False)

    def metric_input(self, output: Tensor) -> Tensor:
        return output.argmax(dim=1)

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        names = {"dice": True, "miou": True, "pixel_acc": True}
        first = 1 if self.background else 0
        names.update({f"dice_{c}": True for c in (self.class_names or ())[first:]})
        if self.lesion_classes:
            names.update(LesionRecall.names_for(self.lesion_classes))
        return names

    @property
    def primary_metric(self) -> str:
        return "dice"
