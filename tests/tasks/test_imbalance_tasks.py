"""Tasks' imbalance options: the loss by name, class weights from frequencies, focal alpha,
lesion recall among the segmentation metrics, and the errors of bad options."""

from __future__ import annotations

import pytest
import torch

from mtl.losses import class_weights_from_frequencies, focal_loss, soft_tversky_loss
from mtl.tasks import ClassificationTask, SegmentationTask, TargetSpec, TaskConfigError

SEG_FREQ = (0.9, 0.08, 0.02)
SEG_SPEC = TargetSpec(
    "segmentation", 3, ("background", "organ", "lesion"), 255, class_frequencies=SEG_FREQ
)
CLS_SPEC = TargetSpec("classification", 3, ("x", "y", "z"), class_frequencies=(0.7, 0.2, 0.1))


def test_segmentation_focal_tversky_with_median_weights():
    task = SegmentationTask(
        "seg", loss="tversky_focal", class_weights="median", focal_gamma=1.0, dice_weight=0.5
    )
    assert task.needs_class_frequencies
    task.bind(SEG_SPEC)
    weights = class_weights_from_frequencies(SEG_FREQ, "median")
    assert task.criterion.class_weights.tolist() == pytest.approx(weights.tolist())
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    expected = focal_loss(logits, target, gamma=1.0, weight=weights, ignore_index=255)
    expected = expected + 0.5 * soft_tversky_loss(logits, target, ignore_index=255)
    assert task.loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_classification_focal_alpha_is_the_binary_weighting():
    task = ClassificationTask("cls", loss="focal", focal_alpha=0.25)
    task.bind(CLS_SPEC)
    assert task.class_weights.tolist() == pytest.approx([0.75, 0.25, 0.25])
    assert not task.needs_class_frequencies
    with pytest.raises(TaskConfigError, match="focal_alpha is set but the task's loss has no"):
        ClassificationTask("cls", loss="ce", focal_alpha=0.25).bind(CLS_SPEC)
    with pytest.raises(TaskConfigError, match=r"focal_alpha and tasks\.cls\.class_weights both"):
        ClassificationTask("cls", loss="focal", focal_alpha=0.25, class_weights="inverse").bind(
            CLS_SPEC
        )


def test_bad_loss_options_fail_when_configured_or_bound():
    with pytest.raises(TaskConfigError, match=r"tasks.cls.loss='dice'.*\['ce', 'focal'\]"):
        ClassificationTask("cls", loss="dice")
    with pytest.raises(TaskConfigError, match=r"tasks\.seg\.loss: unknown loss 'lovasz'"):
        SegmentationTask("seg", loss="lovasz")
    with pytest.raises(TaskConfigError, match="class_weights weigh the CE / focal term"):
        SegmentationTask("seg", loss="dice", class_weights=[1, 1, 1]).bind(SEG_SPEC)
    with pytest.raises(TaskConfigError, match="'often' is not a mode"):
        SegmentationTask("seg", class_weights="often")
    no_freq = TargetSpec("segmentation", 3, ("background", "organ", "lesion"), 255)
    with pytest.raises(TaskConfigError, match="needs class frequencies"):
        SegmentationTask("seg", class_weights="inverse").bind(no_freq)
    absent = TargetSpec("classification", 2, ("a", "b"), class_frequencies=(1.0, 0.0))
    with pytest.raises(TaskConfigError, match=r"class_weights=inverse: classes \[1\] never"):
        ClassificationTask("cls", class_weights="inverse").bind(absent)


def test_lesion_recall_is_a_segmentation_metric_when_asked_for():
    task = SegmentationTask("seg", lesion_classes=["lesion"], lesion_min_overlap=0.5)
    task.bind(SEG_SPEC)
    assert {"lesion_recall", "lesion_recall_lesion"} <= set(task.higher_is_better)
    metrics = task.build_metrics()
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    target[0, 1:3, 1:3] = 2
    logits = torch.zeros(1, 3, 6, 6)
    logits[0, 2, 1:3, 1:3] = 5.0  # predicts the lesion exactly
    task.update_metrics(metrics, logits, target, None)
    out = metrics.compute()
    assert out["lesion_recall_lesion"].item() == 1.0 and "dice_lesion" in out
    plain = SegmentationTask("seg")
    plain.bind(SEG_SPEC)
    assert "lesion_recall" not in plain.higher_is_better
    with pytest.raises(TaskConfigError, match=r"lesion_classes \['tumour'\] are not classes"):
        SegmentationTask("seg", lesion_classes=["tumour"]).bind(SEG_SPEC)
    with pytest.raises(TaskConfigError, match="connectivity must be 1"):
        SegmentationTask("seg", lesion_connectivity=4)
