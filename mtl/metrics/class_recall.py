"""Recall per class of a multi-class target: the minority classes' own score.

Balanced accuracy is their mean and hides which class pays; an imbalance ablation needs the
malignant (or benign) recall on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torchmetrics.classification import MulticlassRecall


class PerClassRecall(MulticlassRecall):
    """`recall_<class>` for every class: TP / (TP + FN) over the split; NaN for a class with
    no sample in the split (undefined, as lesion recall; torchmetrics would give 0)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, class_names: Sequence[str], **kwargs) -> None:
        super().__init__(num_classes=len(class_names), average=None, **kwargs)
        self.class_names = tuple(class_names)

    @staticmethod
    def names_for(class_names: Sequence[str]) -> dict[str, bool]:
        """Metric names with their direction, for a task's `higher_is_better`."""
        return {f"recall_{c}": True for c in class_names}

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        tp, _, _, fn = self._final_state()
        support = tp + fn
        recall = (tp / support.clamp(min=1)).float().masked_fill(support == 0, float("nan"))
        return {f"recall_{c}": recall[i] for i, c in enumerate(self.class_names)}
