"""Dense regression and boundary tasks of the natural-image benchmarks (NYUv2, Cityscapes,
synthetic scenes): depth, surface normals, semantic boundaries.

Each predicts a map at input resolution through the run's decoder (or its own), and is
measured by a split-level torchmetrics `Metric` from `mtl.metrics` (correct under DDP).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from mtl.losses import balanced_bce, cosine_loss, masked_l1
from mtl.metrics import BoundaryFScore, DepthMetrics, NormalMetrics
from mtl.tasks.base import Task, build_dense_head


class DenseTask(Task):
    """A task with a per-pixel head of `out_channels` channels."""

    out_channels: int = 1

    def __init__(
        self, name: str, target: str | None = None, decoder: Callable[..., nn.Module] | None = None
    ) -> None:
        super().__init__(name, target)
        self.decoder_factory = decoder

    def build_head(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        decoder: Callable[..., nn.Module] | None = None,
    ) -> nn.Module:
        return build_dense_head(
            self, self.decoder_factory, decoder, channels, reductions, self.out_channels
        )


class DepthTask(DenseTask):
    """Depth in metres: L1 on valid pixels; `abs_err`, `rel_err`, `rmse`, `delta1`."""

    kind = "depth"

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return masked_l1(output, target)

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"depth": DepthMetrics()}, compute_groups=False)

    def metric_input(self, output: Tensor) -> Tensor:
        return output

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        return DepthMetrics().directions

    @property
    def primary_metric(self) -> str:
        return "abs_err"


class NormalsTask(DenseTask):
    """Surface normals: 1 - cosine on valid pixels; angular error mean/median (degrees) and
    the share of pixels within 11.25, 22.5 and 30 degrees."""

    kind = "normals"
    out_channels = 3

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return cosine_loss(output, target)

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"normals": NormalMetrics()}, compute_groups=False)

    def metric_input(self, output: Tensor) -> Tensor:
        return F.normalize(output.float(), dim=1, eps=1e-8)

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        return NormalMetrics().directions

    @property
    def primary_metric(self) -> str:
        return "mean"


class BoundaryTask(DenseTask):
    """Semantic boundaries (an auxiliary task for segmentation): class-balanced BCE; F-score
    at a pixel tolerance."""

    kind = "boundary"

    def __init__(
        self,
        name: str = "boundary",
        target: str | None = None,
        decoder: Callable[..., nn.Module] | None = None,
        ignore_index: int = 255,
        tolerance: int = 2,
        threshold: float = 0.5,
    ) -> None:
        super().__init__(name, target, decoder)
        self.ignore_index = ignore_index
        self.tolerance = tolerance
        self.threshold = threshold

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return balanced_bce(output, target, self.ignore_index)

    def build_metrics(self) -> MetricCollection:
        metric = BoundaryFScore(
            tolerance=self.tolerance, threshold=self.threshold, ignore_index=self.ignore_index
        )
        return MetricCollection({"boundary": metric}, compute_groups=False)

    def metric_input(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.float())

    @property
    def higher_is_better(self) -> Mapping[str, bool]:
        return self.build_metrics()["boundary"].directions

    @property
    def primary_metric(self) -> str:
        return "f1"
