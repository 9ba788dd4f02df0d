import pytest
import torch
import torch.nn.functional as F

from mtl.tasks import ClassificationTask, SegmentationTask, TargetSpec, TaskConfigError

SEG_SPEC = TargetSpec("segmentation", 3, ("bg", "a", "b"), ignore_index=255)
CLS_SPEC = TargetSpec("classification", 3, ("x", "y", "z"))


def test_bind_takes_class_count_from_data_and_rejects_mismatch():
    task = SegmentationTask("seg")
    task.bind(SEG_SPEC)
    assert task.num_classes == 3 and task.class_names == ("bg", "a", "b")
    with pytest.raises(TaskConfigError, match=r"num_classes=4 .* has 3 classes"):
        SegmentationTask("seg", num_classes=4).bind(SEG_SPEC)
    with pytest.raises(TaskConfigError, match=r"classification task .* kind 'segmentation'"):
        ClassificationTask("cls").bind(SEG_SPEC)


def test_class_weights_must_match_class_count():
    with pytest.raises(TaskConfigError, match="2 entries but the target has 3 classes"):
        ClassificationTask("cls", class_weights=[1.0, 2.0]).bind(CLS_SPEC)


def test_balanced_class_weights_are_inverse_frequency():
    spec = TargetSpec("classification", 3, ("x", "y", "z"), class_frequencies=(0.7, 0.2, 0.1))
    task = ClassificationTask("cls", class_weights="balanced")
    task.bind(spec)
    expected = [1 / (3 * 0.7), 1 / (3 * 0.2), 1 / (3 * 0.1)]
    assert task.class_weights.tolist() == pytest.approx(expected)
    with pytest.raises(TaskConfigError, match="does not report"):
        ClassificationTask("cls", class_weights="balanced").bind(CLS_SPEC)
    # `balanced` is the older name of `inverse`; an unknown mode fails when configured
    inverse = ClassificationTask("cls", class_weights="inverse")
    inverse.bind(spec)
    assert inverse.class_weights.tolist() == pytest.approx(expected)
    with pytest.raises(TaskConfigError, match="'sqrt' is not a mode; choose inverse, median"):
        ClassificationTask("cls", class_weights="sqrt")


def test_classification_loss_with_weights_and_smoothing():
    task = ClassificationTask("cls", class_weights=[1.0, 2.0, 3.0], label_smoothing=0.1)
    task.bind(CLS_SPEC)
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
    expected = F.cross_entropy(
        logits, target, weight=torch.tensor([1.0, 2.0, 3.0]), label_smoothing=0.1
    )
    assert task.loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_masked_loss_uses_only_samples_with_targets():
    task = ClassificationTask("cls")
    task.bind(CLS_SPEC)
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 0])
    mask = torch.tensor([True, False, True, False])
    expected = F.cross_entropy(logits[mask], target[mask])
    assert task.masked_loss(logits, target, mask).item() == pytest.approx(expected.item())
    none = task.masked_loss(logits, target, torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def test_classification_metrics_hand_computed():
    task = ClassificationTask("cls")
    task.bind(CLS_SPEC)
    metrics = task.build_metrics()
    # truth 0,0,0,1,2 ; predicted 0,0,1,1,0
    probs = torch.tensor(
        [[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3]]
    )
    task.update_metrics(metrics, probs.log(), torch.tensor([0, 0, 0, 1, 2]), None)
    out = metrics.compute()
    assert out["acc"].item() == pytest.approx(3 / 5)
    # recalls: class0 2/3, class1 1/1, class2 0/1 -> balanced 5/9
    assert out["balanced_acc"].item() == pytest.approx(5 / 9)
    assert 0.0 <= out["auroc"].item() <= 1.0
    names = task.class_names
    recalls = [out[f"recall_{c}"].item() for c in names]
    assert recalls == pytest.approx([2 / 3, 1.0, 0.0])
    assert set(out) <= set(task.higher_is_better)


def test_higher_is_better_covers_per_class_dice():
    task = SegmentationTask("seg")
    task.bind(SEG_SPEC)
    assert task.higher_is_better["dice_a"] is True
    metrics = task.build_metrics()
    metrics.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 4, dtype=torch.long))
    assert set(metrics.compute()) <= set(task.higher_is_better)


def test_recall_of_a_class_absent_from_the_split_is_nan():
    task = ClassificationTask("cls")
    task.bind(CLS_SPEC)
    metrics = task.build_metrics()
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    task.update_metrics(metrics, probs.log(), torch.tensor([0, 1, 1]), None)
    out = metrics.compute()
    assert out["recall_x"].item() == 1.0 and out["recall_y"].item() == 0.5
    assert torch.isnan(out["recall_z"]), "no sample of class z: recall undefined, not 0"
