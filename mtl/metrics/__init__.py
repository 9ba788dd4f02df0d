"""Metrics torchmetrics lacks in the form we need; all are torchmetrics `Metric`s (DDP-safe).

Each metric's `compute()` returns a dict of named scalars, and (for the mixed-direction ones)
`directions` says whether higher is better per name, for the tasks' `higher_is_better`.
"""

from mtl.metrics.boundary import BoundaryFScore
from mtl.metrics.class_recall import PerClassRecall
from mtl.metrics.delta_m import (
    BaselineTable,
    DeltaM,
    delta_m,
    directions_from_tasks,
    load_baselines,
    load_baselines_yaml,
    load_metrics_json,
    load_results,
    nest_metrics,
)
from mtl.metrics.depth import DepthMetrics
from mtl.metrics.lesions import LesionRecall
from mtl.metrics.multilabel import MultilabelMetrics
from mtl.metrics.normals import NormalMetrics
from mtl.metrics.segmentation import SegmentationMetrics, scores_from_confusion

__all__ = [
    "BaselineTable",
    "BoundaryFScore",
    "DeltaM",
    "DepthMetrics",
    "LesionRecall",
    "MultilabelMetrics",
    "NormalMetrics",
    "PerClassRecall",
    "SegmentationMetrics",
    "delta_m",
    "directions_from_tasks",
    "load_baselines",
    "load_baselines_yaml",
    "load_metrics_json",
    "load_results",
    "nest_metrics",
    "scores_from_confusion",
]
