"""Metrics torchmetrics lacks in the form we need; all are torchmetrics `Metric`s (DDP-safe)."""

from mtl.metrics.segmentation import SegmentationMetrics, scores_from_confusion

__all__ = ["SegmentationMetrics", "scores_from_confusion"]
