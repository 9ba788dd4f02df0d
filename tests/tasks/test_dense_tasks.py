"""Dense and multi-label tasks: losses over valid pixels only, heads, metric directions."""

from __future__ import annotations

import math

import pytest
import torch

from mtl.losses import balanced_bce, cosine_loss, masked_l1
from mtl.models import HardParameterSharing, UNetDecoder, UNetEncoder
from mtl.tasks import BoundaryTask, DepthTask, MultiLabelTask, NormalsTask, TargetSpec
from mtl.tasks.base import TaskConfigError


def test_masked_l1_ignores_invalid_depth():
    target = torch.tensor([[[[2.0, 0.0], [4.0, 1.0]]]])
    pred = torch.tensor([[[[1.0, 99.0], [4.5, 1.0]]]])
    assert masked_l1(pred, target).item() == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert masked_l1(pred, torch.zeros_like(target)).item() == 0.0  # nothing valid, no NaN


def test_cosine_loss_ignores_zero_normals():
    target = torch.zeros(1, 3, 1, 3)
    target[0, 2, 0, 0] = -1.0  # facing the camera
    target[0, 0, 0, 1] = 1.0
    pred = torch.zeros(1, 3, 1, 3)
    pred[0, 2, 0, 0] = -5.0  # same direction, any length: loss 0
    pred[0, 0, 0, 1] = -1.0  # opposite: loss 2
    pred[0, 1, 0, 2] = 1.0  # target invalid: ignored
    assert cosine_loss(pred, target).item() == pytest.approx(1.0)


def test_balanced_bce_weights_each_class_by_the_others_share():
    target = torch.tensor([[[[1.0, 0.0, 0.0, 255.0]]]])
    logits = torch.tensor([[[[0.0, 0.0, 2.0, 50.0]]]])
    # 1 positive, 2 negatives among valid pixels: weights 2/3 (positive), 1/3 (negatives)
    bce = [math.log(2), math.log(2), math.log(1 + math.exp(2.0))]
    expected = (2 / 3 * bce[0] + 1 / 3 * bce[1] + 1 / 3 * bce[2]) / (2 / 3 + 2 / 3)
    assert balanced_bce(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_dense_heads_predict_at_input_resolution_and_name_their_metrics():
    tasks = {"depth": DepthTask("depth"), "normals": NormalsTask("normals"), "b": BoundaryTask("b")}
    net = HardParameterSharing(lambda: UNetEncoder(3, (8, 16, 32)), tasks, UNetDecoder)
    out = net(torch.randn(2, 3, 24, 32))
    assert out["depth"].shape == (2, 1, 24, 32) and out["b"].shape == (2, 1, 24, 32)
    assert out["normals"].shape == (2, 3, 24, 32)
    for task in tasks.values():
        metrics = task.build_metrics()
        target = {
            "depth": torch.rand(2, 1, 24, 32) + 0.5,
            "normals": torch.nn.functional.normalize(torch.randn(2, 3, 24, 32), dim=1),
            "boundary": (torch.rand(2, 1, 24, 32) > 0.8).float(),
        }[task.kind]
        task.update_metrics(metrics, out[task.name], target, None)
        assert set(task.higher_is_better) <= set(metrics.compute())
        assert task.primary_metric in task.higher_is_better


def test_multilabel_pos_weight_balanced_and_checked():
    task = MultiLabelTask("objects", pos_weight="balanced")
    task.bind(TargetSpec("multilabel", 2, ("a", "b"), class_frequencies=(0.5, 0.2)))
    torch.testing.assert_close(task.pos_weight, torch.tensor([1.0, 4.0]))
    bad = MultiLabelTask("objects", pos_weight=[1.0, 2.0, 3.0])
    with pytest.raises(TaskConfigError, match="3 entries but the target has 2"):
        bad.bind(TargetSpec("multilabel", 2, ("a", "b")))
    task = MultiLabelTask("objects")
    task.bind(TargetSpec("multilabel", 2, ("a", "b")))
    logits = torch.tensor([[2.0, -1.0]])
    loss = task.loss(logits, torch.tensor([[1.0, 0.0]]))
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_task_kind_mismatch_names_both_sides():
    with pytest.raises(TaskConfigError, match="depth task but the data's target"):
        DepthTask("depth").bind(TargetSpec("normals"))
