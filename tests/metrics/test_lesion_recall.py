"""Lesion-wise detection recall on hand-made masks: components per slice, the overlap rule,
connectivity, ignored pixels, classes without lesions, accumulation over batches."""

from __future__ import annotations

import math

import pytest
import torch

from mtl.metrics import LesionRecall

LESION = 2


def masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Slice 0: three lesions (4, 4 and 1 px); the prediction covers 1 px of the first, all of
    the second, misses the third. Slice 1: one lesion (2 px), found."""
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    pred = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 6:, :] = 1  # organ, not a lesion class here
    target[0, 0:2, 0:2] = LESION  # lesion A, 4 px
    target[0, 0:2, 4:6] = LESION  # lesion B, 4 px
    target[0, 4, 7] = LESION  # lesion C, 1 px
    target[1, 3, 3:5] = LESION  # lesion D, 2 px
    pred[0, 0, 0] = LESION  # 1 of A's 4 pixels
    pred[0, 0:2, 4:6] = LESION  # all of B
    pred[0, 3, 0] = LESION  # a false positive: does not change recall
    pred[1, 3, 3] = LESION  # 1 of D's 2 pixels
    return pred, target


def test_any_overlap_counts_as_detected():
    pred, target = masks()
    metric = LesionRecall([LESION], ["lesion"])
    metric.update(pred, target)
    out = metric.compute()
    assert out["lesion_recall_lesion"].item() == pytest.approx(3 / 4)  # A, B, D of 4
    assert out["lesion_recall"].item() == pytest.approx(3 / 4)


def test_min_overlap_share_of_the_lesion_pixels():
    pred, target = masks()
    half = LesionRecall([LESION], ["lesion"], min_overlap=0.5)
    half.update(pred, target)
    assert half.compute()["lesion_recall"].item() == pytest.approx(2 / 4)  # B (4/4), D (1/2)
    full = LesionRecall([LESION], ["lesion"], min_overlap=1.0)
    full.update(pred, target)
    assert full.compute()["lesion_recall"].item() == pytest.approx(1 / 4)  # B only


def test_connectivity_decides_whether_diagonal_pixels_are_one_lesion():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = target[0, 1, 1] = LESION  # diagonal neighbours
    pred = torch.zeros_like(target)
    pred[0, 0, 0] = LESION
    eight = LesionRecall([LESION], ["lesion"], connectivity=2)
    four = LesionRecall([LESION], ["lesion"], connectivity=1)
    for metric in (eight, four):
        metric.update(pred, target)
    assert eight.compute()["lesion_recall"].item() == 1.0  # one lesion, found
    assert four.compute()["lesion_recall"].item() == 0.5  # two lesions, one found


def test_lesions_are_per_slice_and_accumulate_over_batches():
    pred, target = masks()
    metric = LesionRecall([LESION], ["lesion"])
    metric.update(pred[:1], target[:1])
    metric.update(pred[1:], target[1:])
    assert metric.detected.tolist() == [3] and metric.total.tolist() == [4]


def test_ignored_pixels_and_classes_without_lesions():
    pred, target = masks()
    target[0, 0:2, 4:6] = 255  # lesion B becomes unknown: neither lesion nor prediction
    metric = LesionRecall([1, LESION, 3], ["organ", "lesion", "other"])
    metric.update(pred, target)
    out = metric.compute()
    assert out["lesion_recall_lesion"].item() == pytest.approx(2 / 3)
    assert out["lesion_recall_organ"].item() == 0.0  # two organ slabs, never predicted
    assert math.isnan(out["lesion_recall_other"].item())  # no lesion of class 3 anywhere
    assert out["lesion_recall"].item() == pytest.approx((0.0 + 2 / 3) / 2)  # NaN left out


def test_bad_options_fail():
    with pytest.raises(ValueError, match="min_overlap must be a share"):
        LesionRecall([LESION], ["lesion"], min_overlap=2.0)
    with pytest.raises(ValueError, match="connectivity must be 1"):
        LesionRecall([LESION], ["lesion"], connectivity=3)
    with pytest.raises(ValueError, match="B x H x W"):
        LesionRecall([LESION], ["lesion"]).update(torch.zeros(2, 4), torch.zeros(2, 4))
