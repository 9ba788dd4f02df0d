"""Losses for class imbalance against hand computation and torch: focal, Tversky, class-weighted
CE, class weights from frequencies, and the composite loss's terms and errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtl.losses import (
    CompositeLoss,
    class_weights_from_frequencies,
    focal_loss,
    soft_dice_loss,
    soft_tversky_loss,
)


def _dense(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 5, 6, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 5, 6), generator=gen)
    target[0, :2, :3] = 255
    return logits, target


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = _dense()
    weight = torch.tensor([0.2, 1.0, 3.0, 7.0], dtype=torch.float64)
    for w in (None, weight):
        expected = F.cross_entropy(logits, target, weight=w, ignore_index=255)
        got = focal_loss(logits, target, gamma=0.0, weight=w, ignore_index=255)
        assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    image_logits, labels = torch.randn(7, 3, dtype=torch.float64), torch.tensor([0, 1, 2] * 2 + [2])
    assert focal_loss(image_logits, labels, gamma=0.0).item() == pytest.approx(
        F.cross_entropy(image_logits, labels).item(), rel=1e-12
    )


def test_focal_matches_hand_computation():
    # two samples, probabilities of the true class 0.9 and 0.2, class weights 1 and 3
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2]], dtype=torch.float64)
    target = torch.tensor([0, 1])
    weight = torch.tensor([1.0, 3.0], dtype=torch.float64)
    terms = [1.0 * 0.1**2 * -math.log(0.9), 3.0 * 0.8**2 * -math.log(0.2)]
    expected = sum(terms) / (1.0 + 3.0)
    got = focal_loss(probs.log(), target, gamma=2.0, weight=weight)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    # easy samples lose weight: the focal loss is below the CE of the same predictions
    assert got.item() < F.cross_entropy(probs.log(), target, weight=weight).item()


def test_focal_gradient_is_finite_for_confident_predictions_and_small_gamma():
    logits = torch.tensor([[30.0, -30.0], [0.0, 0.0]], requires_grad=True)
    focal_loss(logits, torch.tensor([0, 1]), gamma=0.5).backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_with_every_target_ignored_is_a_zero_in_the_graph():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = focal_loss(logits, torch.full((1, 2, 2), 255), ignore_index=255)
    assert loss.item() == 0.0 and loss.requires_grad


def test_tversky_with_equal_alpha_beta_is_soft_dice():
    logits, target = _dense(1)
    for options in (
        {"include_background": False, "batch_dice": True},
        {"include_background": True, "batch_dice": False},
    ):
        dice = soft_dice_loss(logits, target, ignore_index=255, smooth=0.0, **options)
        tversky = soft_tversky_loss(
            logits, target, alpha=0.5, beta=0.5, ignore_index=255, smooth=0.0, **options
        )
        assert tversky.item() == pytest.approx(dice.item(), rel=1e-12)


def test_tversky_matches_hand_computation():
    # one image, 2 classes, foreground probabilities 0.9, 0.2, 0.8, 0.1; truth 1, 0, 1, 1
    p1 = torch.tensor([0.9, 0.2, 0.8, 0.1], dtype=torch.float64)
    logits = torch.stack([1 - p1, p1]).view(1, 2, 1, 4).log()
    target = torch.tensor([[[1, 0, 1, 1]]])
    tp, fp, fn = 0.9 + 0.8 + 0.1, 0.2, 0.1 + 0.2 + 0.9
    expected = 1 - tp / (tp + 0.3 * fp + 0.7 * fn)
    got = soft_tversky_loss(logits, target, alpha=0.3, beta=0.7, smooth=0.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # beta > alpha: missing foreground (fn) costs more than the same amount of false alarm
    swapped = soft_tversky_loss(logits, target, alpha=0.7, beta=0.3, smooth=0.0)
    assert got.item() > swapped.item()


def test_weighted_ce_equals_torch_cross_entropy_with_weight():
    logits, target = _dense(2)
    weight = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    loss = CompositeLoss("ce", class_weights=weight, ignore_index=255)
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-12)


def test_composite_is_the_weighted_sum_of_its_terms():
    logits, target = _dense(3)
    loss = CompositeLoss(
        "tversky_focal", ce_weight=0.5, dice_weight=2.0, focal_gamma=1.5, tversky_alpha=0.4
    )
    focal = focal_loss(logits, target, gamma=1.5, ignore_index=255)
    tversky = soft_tversky_loss(logits, target, alpha=0.4, beta=0.7, ignore_index=255)
    assert loss(logits, target).item() == pytest.approx(
        0.5 * focal.item() + 2.0 * tversky.item(), rel=1e-6
    )
    only_dice = CompositeLoss("dice")(logits, target)
    assert only_dice.item() == pytest.approx(
        soft_dice_loss(logits, target, ignore_index=255).item(), rel=1e-6
    )


def test_class_weights_from_frequencies_inverse_and_median():
    freq = [0.7, 0.2, 0.1]
    inverse = class_weights_from_frequencies(freq, "inverse")
    assert inverse.tolist() == pytest.approx([1 / 2.1, 1 / 0.6, 1 / 0.3])
    # frequency-weighted mean weight is 1: the loss keeps its scale
    assert sum(f * w for f, w in zip(freq, inverse.tolist(), strict=True)) == pytest.approx(1.0)
    assert class_weights_from_frequencies(freq, "balanced").tolist() == inverse.tolist()
    median = class_weights_from_frequencies(freq, "median")
    assert median.tolist() == pytest.approx([0.2 / 0.7, 1.0, 2.0])
    even = class_weights_from_frequencies([0.6, 0.3, 0.08, 0.02], "median")
    assert even.tolist() == pytest.approx([0.19 / 0.6, 0.19 / 0.3, 0.19 / 0.08, 0.19 / 0.02])
    with pytest.raises(ValueError, match=r"classes \[1\] never occur"):
        class_weights_from_frequencies([0.9, 0.0, 0.1], "inverse")
    with pytest.raises(ValueError, match="must be one of"):
        class_weights_from_frequencies(freq, "sqrt")


def test_composite_loss_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown loss 'dice_bce'"):
        CompositeLoss("dice_bce")
    with pytest.raises(ValueError, match="class_weights weigh the CE / focal term"):
        CompositeLoss("tversky", class_weights=torch.ones(3))
    with pytest.raises(ValueError, match="label_smoothing applies to the CE term only"):
        CompositeLoss("focal", label_smoothing=0.1)
    with pytest.raises(ValueError, match="no term left"):
        CompositeLoss("dice_ce", ce_weight=0.0, dice_weight=0.0)
    with pytest.raises(ValueError, match="tversky_alpha and tversky_beta"):
        CompositeLoss("tversky", tversky_alpha=0.0, tversky_beta=0.0)
