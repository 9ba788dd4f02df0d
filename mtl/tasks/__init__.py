"""Tasks: the unit a user adds by config (`conf/tasks/`)."""

from mtl.tasks.base import ClassLabelTask, TargetSpec, Task, TaskConfigError
from mtl.tasks.classification import ClassificationTask
from mtl.tasks.segmentation import SegmentationTask

__all__ = [
    "ClassLabelTask",
    "ClassificationTask",
    "SegmentationTask",
    "TargetSpec",
    "Task",
    "TaskConfigError",
]
