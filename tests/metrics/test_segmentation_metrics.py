import math

import pytest
import torch

from mtl.metrics import SegmentationMetrics


def test_scores_against_hand_computation():
    metric = SegmentationMetrics(["background", "liver", "lesion"], ignore_index=255)
    truth = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2, 1, 2]])
    metric.update(pred, truth)
    out = metric.compute()
    # liver: tp 2, fp 2 (pixels 1 and 6), fn 1 (pixel 4) -> dice 4/7, iou 2/5
    # lesion: tp 1, fp 0, fn 1 -> dice 2/3, iou 1/2 ; background: tp 1, fp 1, fn 1 -> iou 1/3
    assert out["dice_liver"].item() == pytest.approx(4 / 7)
    assert out["dice_lesion"].item() == pytest.approx(2 / 3)
    assert out["dice"].item() == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert out["miou"].item() == pytest.approx((1 / 3 + 2 / 5 + 1 / 2) / 3)
    assert out["pixel_acc"].item() == pytest.approx(4 / 7)  # 7 valid pixels, 4 right
    assert "dice_background" not in out


def test_accumulates_over_batches_globally():
    metric = SegmentationMetrics(["bg", "fg"])
    metric.update(torch.tensor([[1, 1]]), torch.tensor([[1, 1]]))  # 2 tp
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[1, 0]]))  # 1 fn, 1 fp
    # global: 2*2 / (2*2 + 1 + 1) = 2/3 (a per-batch mean would be (1 + 0) / 2)
    assert metric.compute()["dice_fg"].item() == pytest.approx(2 / 3)


def test_absent_class_is_nan_and_left_out_of_mean():
    metric = SegmentationMetrics(["bg", "a", "b"])
    metric.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    out = metric.compute()
    assert math.isnan(out["dice_b"].item())
    assert out["dice"].item() == pytest.approx(1.0)
