import math

import numpy as np
import pytest
import torch

from mtl.metrics import NormalMetrics
from mtl.metrics.normals import angular_error_deg


def _field(vectors) -> torch.Tensor:
    """N x 3 vectors -> 1 x 3 x 1 x N."""
    return torch.tensor(vectors, dtype=torch.float32).T.reshape(1, 3, 1, -1)


def _tilted(deg: float, scale: float = 1.0) -> list[float]:
    a = math.radians(deg)
    return [scale * math.sin(a), 0.0, scale * math.cos(a)]


def _numpy_errors(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Reference angles over valid pixels, float64 arccos of normalised vectors."""
    p = pred.double().permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    t = target.double().permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    valid = np.abs(t).sum(1) > 0
    p = p[valid] / np.linalg.norm(p[valid], axis=1, keepdims=True)
    t = t[valid] / np.linalg.norm(t[valid], axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip((p * t).sum(1), -1, 1)))


def test_scores_against_hand_computation():
    metric = NormalMetrics()
    up = [0.0, 0.0, 1.0]
    pred = _field([_tilted(0), _tilted(10, 2.0), _tilted(20, 0.5), _tilted(45), _tilted(90), up])
    target = _field([up, up, up, up, up, [0.0, 0.0, 0.0]])  # the last pixel is invalid
    metric.update(pred, target)
    out = metric.compute()
    # errors 0, 10, 20, 45, 90 (predictions are not unit length)
    assert out["mean"].item() == pytest.approx((0 + 10 + 20 + 45 + 90) / 5, abs=1e-4)
    assert out["median"].item() == pytest.approx(20.0, abs=metric.bin_width)
    assert out["within_11.25"].item() == pytest.approx(2 / 5)
    assert out["within_22.5"].item() == pytest.approx(3 / 5)
    assert out["within_30"].item() == pytest.approx(3 / 5)


def test_small_angles_keep_their_precision():
    # acos(cos(0.006 deg)) in float32 returns 0; the histogram's 0.01 deg bins need better
    a = 1e-4  # radians
    angle = angular_error_deg(_field([[math.sin(a), 0.0, math.cos(a)]]), _field([[0, 0, 1.0]]))
    assert angle.item() == pytest.approx(math.degrees(a), rel=1e-3)


def test_zero_prediction_counts_as_worst_case():
    metric = NormalMetrics()
    metric.update(_field([[0.0, 0.0, 0.0]]), _field([[0.0, 0.0, 1.0]]))
    assert metric.compute()["mean"].item() == pytest.approx(180.0)


def test_invalid_targets_ignored_and_empty_is_nan():
    metric = NormalMetrics()
    metric.update(_field([[1.0, 0.0, 0.0]] * 2), _field([[0.0, 0.0, 0.0], [float("nan")] * 3]))
    assert all(math.isnan(v.item()) for v in metric.compute().values())


@pytest.mark.parametrize("bin_width", [0.01, 0.37, 2.0])
@pytest.mark.parametrize("pixels", [40_000, 40_001])  # even and odd counts
def test_histogram_median_error_is_within_one_bin(bin_width, pixels):
    gen = torch.Generator().manual_seed(pixels)
    target = torch.nn.functional.normalize(torch.randn(1, 3, 1, pixels, generator=gen), dim=1)
    pred = target + 0.6 * torch.randn(1, 3, 1, pixels, generator=gen)
    metric = NormalMetrics(bin_width=bin_width)
    metric.update(pred, target)
    errors = torch.from_numpy(_numpy_errors(pred, target))
    exact = torch.median(errors).item()  # lower middle value, over all pixels
    estimate = metric.compute()["median"].item()
    # the documented bound: one bin (plus float32-vs-float64 angle round-off)
    assert abs(estimate - exact) <= bin_width + 1e-4
    assert metric.compute()["mean"].item() == pytest.approx(errors.mean().item(), rel=1e-5)


def test_accumulation_is_over_the_split_not_per_batch():
    gen = torch.Generator().manual_seed(1)
    target = torch.nn.functional.normalize(torch.randn(6, 3, 4, 5, generator=gen), dim=1)
    pred = target + torch.randn(6, 3, 4, 5, generator=gen) * torch.linspace(0.05, 2, 6).view(
        6, 1, 1, 1
    )
    target[3:, :, :3] = 0  # the noisy images are mostly invalid: few pixels, same batch weight
    whole, parts = NormalMetrics(), NormalMetrics()
    whole.update(pred, target)
    for i in range(6):
        parts.update(pred[i : i + 1], target[i : i + 1])
    for key, value in whole.compute().items():
        assert parts.compute()[key].item() == pytest.approx(value.item(), rel=1e-6)
    errors = _numpy_errors(pred, target)
    split_median = torch.median(torch.from_numpy(errors)).item()
    assert whole.compute()["median"].item() == pytest.approx(split_median, abs=whole.bin_width)
    batches = [_numpy_errors(pred[i : i + 1], target[i : i + 1]) for i in range(6)]
    per_batch = np.mean([np.median(e) for e in batches])
    assert abs(per_batch - split_median) > 1.0  # what a mean of batch medians would report
    assert whole.compute()["within_22.5"].item() == pytest.approx((errors < 22.5).mean(), rel=1e-6)


def test_directions_cover_every_reported_name():
    metric = NormalMetrics(thresholds=(5, 11.25))
    metric.update(_field([[0, 0, 1.0]]), _field([[0, 0, 1.0]]))
    assert (
        set(metric.directions)
        == set(metric.compute())
        == {
            "mean",
            "median",
            "within_5",
            "within_11.25",
        }
    )
