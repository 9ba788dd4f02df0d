import math

import pytest
import torch
import torch.nn.functional as F

from mtl.losses import DiceCELoss, soft_dice_loss


def _logits_from_probs(probs: torch.Tensor) -> torch.Tensor:
    return probs.log()


def test_soft_dice_matches_hand_computation():
    # one image, 2 classes, 4 pixels; foreground probabilities 0.9, 0.2, 0.8, 0.1
    p1 = torch.tensor([0.9, 0.2, 0.8, 0.1])
    probs = torch.stack([1 - p1, p1]).view(1, 2, 1, 4)
    target = torch.tensor([[[1, 0, 1, 1]]])
    # foreground: intersection = 0.9 + 0.8 + 0.1 = 1.8; sums = 2.0 + 3 = 5.0
    expected = 1 - (2 * 1.8 + 1e-5) / (5.0 + 1e-5)
    got = soft_dice_loss(_logits_from_probs(probs), target, include_background=False)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_soft_dice_perfect_prediction_is_zero_and_ignore_index_is_excluded():
    target = torch.tensor([[[0, 1, 2, 255]]])
    logits = F.one_hot(torch.tensor([[[0, 1, 2, 0]]]), 3).movedim(-1, 1).float() * 50
    assert soft_dice_loss(logits, target, ignore_index=255).item() == pytest.approx(0, abs=1e-5)
    # the ignored pixel is predicted as class 0: would count if not ignored (with background)
    with_bg = soft_dice_loss(logits, target, ignore_index=255, include_background=True)
    assert with_bg.item() == pytest.approx(0, abs=1e-5)


def test_dice_ce_is_weighted_sum_of_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 5)
    target = torch.randint(0, 3, (2, 5, 5))
    target[0, 0, 0] = 255
    loss = DiceCELoss(dice_weight=0.5, ce_weight=2.0, ignore_index=255)(logits, target)
    ce = F.cross_entropy(logits, target, ignore_index=255)
    dice = soft_dice_loss(logits, target, ignore_index=255)
    assert loss.item() == pytest.approx(0.5 * dice.item() + 2.0 * ce.item(), rel=1e-5)


def test_class_weights_change_ce():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    plain = DiceCELoss(dice_weight=0.0)(logits, target)
    weighted = DiceCELoss(dice_weight=0.0, class_weights=torch.tensor([1.0, 1.0, 10.0]))(
        logits, target
    )
    expected = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 1.0, 10.0]))
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not math.isclose(plain.item(), weighted.item())


def test_bad_weights_rejected():
    with pytest.raises(ValueError, match="dice_weight"):
        DiceCELoss(dice_weight=0.0, ce_weight=0.0)
