"""Tasks: the unit a user adds by config (`conf/tasks/`)."""

from mtl.tasks.base import ClassLabelTask, TargetSpec, Task, TaskConfigError
from mtl.tasks.classification import ClassificationTask
from mtl.tasks.dense import BoundaryTask, DenseTask, DepthTask, NormalsTask
from mtl.tasks.multilabel import MultiLabelTask
from mtl.tasks.segmentation import SegmentationTask

__all__ = [
    "BoundaryTask",
    "ClassLabelTask",
    "ClassificationTask",
    "DenseTask",
    "DepthTask",
    "MultiLabelTask",
    "NormalsTask",
    "SegmentationTask",
    "TargetSpec",
    "Task",
    "TaskConfigError",
]
