"""Semantic segmentation: a decoder head, Dice + CE, Dice/IoU/pixel accuracy."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn
from torchmetrics import MetricCollection

from mtl.losses import DiceCELoss
from mtl.metrics import SegmentationMetrics
from mtl.tasks.base import ClassLabelTask, TargetSpec, as_weight_tensor, build_dense_head


class SegmentationTask(ClassLabelTask):
    """Per-pixel classification; class names and count come from the data unless given."""

    kind = "segmentation"

    def __init__(
        self,
        name: str = "seg",
        target: str | None = None,
        num_classes: int | None = None,
        ignore_index: int = 255,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        class_weights: Sequence[float] | str | None = None,
        label_smoothing: float = 0.0,
        batch_dice: bool = True,
        decoder: Callable[..., nn.Module] | None = None,
        background: bool = True,
    ) -> None:
        super().__init__(name, target, num_classes)
        self.ignore_index = ignore_index
        self.background = background
        self._loss_args = dict(
            dice_weight=dice_weight,
            ce_weight=ce_weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            batch_dice=batch_dice,
            include_background=not background,
        )
        self._class_weights = class_weights
        self.decoder_factory = decoder
        self.criterion: DiceCELoss | None = None

    def bind(self, spec: TargetSpec) -> None:
        super().bind(spec)
        weights = as_weight_tensor(self._class_weights, spec, f"tasks.{self.name}.class_weights")
        self.criterion = DiceCELoss(class_weights=weights, **self._loss_args)

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
        return MetricCollection(
            {
                "seg": SegmentationMetrics(
                    self.class_names,
                    ignore_index=self.ignore_index,
                    include_background=not self.background,
                )
            },
            compute_groups=False,
        )

    def metric_input(self, output: Tensor) -> Tensor:
        return output.argmax(dim=1)

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        names = {"dice": True, "miou": True, "pixel_acc": True}
        first = 1 if self.background else 0
        names.update({f"dice_{c}": True for c in (self.class_names or ())[first:]})
        return names

    @property
    def primary_metric(self) -> str:
        return "dice"
