import numpy as np
import pytest
import torch

from mtl.metrics import BoundaryFScore


def _map(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(1, 1, len(rows), -1)


def _brute_force_counts(prob, target, threshold, tolerance, ignore=255):
    """Matched predictions, predictions, matched truth, truth by explicit pixel distances."""
    counts = np.zeros(4, dtype=np.int64)
    for p_img, t_img in zip(prob[:, 0].numpy(), target[:, 0].numpy(), strict=True):
        valid = t_img != ignore
        pred = np.argwhere((p_img > threshold) & valid)
        true = np.argwhere((t_img == 1) & valid)

        def near(a, b):
            if len(b) == 0:
                return np.zeros(len(a), dtype=bool)
            return (np.abs(a[:, None, :] - b[None, :, :]).max(-1) <= tolerance).any(1)

        counts += [near(pred, true).sum(), len(pred), near(true, pred).sum(), len(true)]
    return counts


def _f1(counts):
    p = counts[0] / counts[1] if counts[1] else 0.0
    r = counts[2] / counts[3] if counts[3] else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


TRUTH = [[0, 0, 1, 0, 0]] * 5  # a vertical boundary in column 2
# predicted one column to the right, plus a stray pixel in the corner
PRED = [[0.9, 0, 0, 0.9, 0]] + [[0, 0, 0, 0.9, 0]] * 4


@pytest.mark.parametrize(
    ("tolerance", "precision", "recall"),
    [(0, 0.0, 0.0), (1, 5 / 6, 1.0), (2, 1.0, 1.0)],  # the corner is 2 px from column 2
)
def test_scores_against_hand_computation(tolerance, precision, recall):
    metric = BoundaryFScore(tolerance=tolerance)
    metric.update(_map(PRED), _map(TRUTH))
    out = metric.compute()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    assert out["precision"].item() == pytest.approx(precision)
    assert out["recall"].item() == pytest.approx(recall)
    assert out["f1"].item() == pytest.approx(f1)  # tolerance 1: 10/11


def test_ignored_pixels_are_left_out():
    truth = [row[:] for row in TRUTH]
    truth[0][0] = 255  # the stray prediction lands on an ignored pixel
    metric = BoundaryFScore(tolerance=1)
    metric.update(_map(PRED), _map(truth))
    assert metric.compute()["precision"].item() == pytest.approx(1.0)


def test_threshold_is_strict_and_nothing_predicted_scores_zero():
    metric = BoundaryFScore(tolerance=0, threshold=0.5)
    metric.update(_map([[0.5, 0.5]]), _map([[1, 1]]))
    out = metric.compute()
    assert out["f1"].item() == 0.0 and out["precision"].item() == 0.0


def test_ods_picks_the_dataset_best_threshold():
    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 1, 9, 11, generator=gen) > 0.85).float()
    target[0, 0, :2] = 255
    prob = (0.6 * target.clamp(max=1) + 0.5 * torch.rand(3, 1, 9, 11, generator=gen)).clamp(0, 1)
    thresholds = [0.2, 0.4, 0.6, 0.8]
    metric = BoundaryFScore(tolerance=1, threshold=0.5, ods_thresholds=thresholds)
    metric.update(prob, target)
    out = metric.compute()
    scores = {t: _f1(_brute_force_counts(prob, target, t, 1)) for t in thresholds}
    best = max(scores, key=scores.get)
    assert out["ods_f1"].item() == pytest.approx(scores[best])
    assert out["ods_threshold"].item() == pytest.approx(best)
    assert out["f1"].item() == pytest.approx(_f1(_brute_force_counts(prob, target, 0.5, 1)))


@pytest.mark.parametrize("tolerance", [0, 1, 3])
def test_counts_match_brute_force_matching(tolerance):
    gen = torch.Generator().manual_seed(tolerance)
    target = (torch.rand(2, 1, 12, 10, generator=gen) > 0.9).float()
    target[1, 0, 5:, :4] = 255
    prob = torch.rand(2, 1, 12, 10, generator=gen) ** 3
    metric = BoundaryFScore(tolerance=tolerance)
    metric.update(prob, target)
    expected = _brute_force_counts(prob, target, 0.5, tolerance)
    assert metric.counts[metric.fixed_index].tolist() == expected.tolist()


def test_accumulation_equals_one_update_on_the_concatenation():
    gen = torch.Generator().manual_seed(3)
    target = (torch.rand(6, 1, 8, 8, generator=gen) > 0.8).float()
    prob = torch.rand(6, 1, 8, 8, generator=gen)
    whole = BoundaryFScore(ods_thresholds=[0.3, 0.7])
    parts = BoundaryFScore(ods_thresholds=[0.3, 0.7])
    whole.update(prob, target)
    for i in range(0, 6, 2):
        parts.update(prob[i : i + 2], target[i : i + 2])
    assert torch.equal(whole.counts, parts.counts)
    for key, value in whole.compute().items():
        assert parts.compute()[key].item() == pytest.approx(value.item())


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="tolerance"):
        BoundaryFScore(tolerance=-1)
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        BoundaryFScore().update(torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4))
