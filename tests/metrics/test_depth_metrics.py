import math

import numpy as np
import pytest
import torch

from mtl.metrics import DepthMetrics


def _image(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, -1)


def test_scores_against_hand_computation():
    metric = DepthMetrics(delta_powers=(1, 2, 3))
    # pixel 1 is invalid (target 0); valid pairs (p, t): (2, 1), (3, 4), (5, 5)
    metric.update(_image([2.0, 7.0, 3.0, 5.0]), _image([1.0, 0.0, 4.0, 5.0]))
    out = metric.compute()
    assert out["abs_err"].item() == pytest.approx((1 + 1 + 0) / 3)
    assert out["rel_err"].item() == pytest.approx((1 / 1 + 1 / 4 + 0) / 3)
    assert out["rmse"].item() == pytest.approx(math.sqrt((1 + 1 + 0) / 3))
    # max ratios: 2, 4/3, 1 against 1.25, 1.5625, 1.953125
    assert out["delta1"].item() == pytest.approx(1 / 3)
    assert out["delta2"].item() == pytest.approx(2 / 3)
    assert out["delta3"].item() == pytest.approx(2 / 3)


def test_non_positive_predictions_are_misses_not_nan():
    metric = DepthMetrics()
    metric.update(_image([0.0, -1.0]), _image([2.0, 3.0]))
    out = metric.compute()
    assert all(math.isfinite(v.item()) for v in out.values())
    assert out["delta1"].item() == 0.0
    assert out["abs_err"].item() == pytest.approx((2 + 4) / 2)  # raw prediction, not clamped
    assert out["rel_err"].item() == pytest.approx((2 / 2 + 4 / 3) / 2)


def test_invalid_pixels_do_not_count():
    target = _image([1.0, 0.0, 2.0, float("nan")])
    a, b = DepthMetrics(), DepthMetrics()
    a.update(_image([1.5, 100.0, 2.0, 3.0]), target)
    b.update(_image([1.5, -5.0, 2.0, 9.0]), target)
    for key, value in a.compute().items():
        assert value.item() == pytest.approx(b.compute()[key].item())
    assert a.compute()["abs_err"].item() == pytest.approx(0.25)


def test_no_valid_pixel_gives_nan():
    metric = DepthMetrics()
    metric.update(_image([1.0, 2.0]), _image([0.0, 0.0]))
    assert all(math.isnan(v.item()) for v in metric.compute().values())


def test_accumulation_is_pixel_weighted_over_the_split():
    gen = torch.Generator().manual_seed(0)
    preds = torch.rand(6, 1, 5, 7, generator=gen) * 4
    targets = torch.rand(6, 1, 5, 7, generator=gen) * 4
    targets[:3] *= (torch.rand(3, 1, 5, 7, generator=gen) > 0.7).float()  # sparse batch
    whole, parts = DepthMetrics(delta_powers=(1, 2)), DepthMetrics(delta_powers=(1, 2))
    whole.update(preds, targets)
    for i in range(0, 6, 3):
        parts.update(preds[i : i + 3], targets[i : i + 3])
    for key, value in whole.compute().items():
        assert parts.compute()[key].item() == pytest.approx(value.item(), rel=1e-6)
    # numpy reference over all valid pixels
    p, t = preds.numpy().ravel(), targets.numpy().ravel()
    valid = t > 0
    err = np.abs(p[valid] - t[valid]).astype(np.float64)
    assert whole.compute()["abs_err"].item() == pytest.approx(err.mean(), rel=1e-6)
    # a mean of the two batch means weights the sparse batch too much: not what we report
    per_batch = [np.abs(p - t)[m].mean() for p, t, m in _halves(preds, targets)]
    assert abs(np.mean(per_batch) - err.mean()) > 1e-3


def _halves(preds, targets):
    for i in (0, 3):
        p, t = preds[i : i + 3].numpy().ravel(), targets[i : i + 3].numpy().ravel()
        yield p, t, t > 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        DepthMetrics().update(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3))


def test_directions_cover_every_reported_name():
    metric = DepthMetrics(delta_powers=(1, 2))
    metric.update(_image([1.0, 2.0]), _image([1.0, 2.0]))
    assert set(metric.directions) == set(metric.compute())
    assert metric.directions["abs_err"] is False and metric.directions["delta2"] is True
