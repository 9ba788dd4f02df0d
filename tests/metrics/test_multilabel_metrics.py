import math

import pytest
import torch

from mtl.metrics import MultilabelMetrics

# columns: labels a, b, c (c has no positive in the split)
PROB = torch.tensor([[0.9, 0.10, 0.2], [0.8, 0.40, 0.2], [0.7, 0.35, 0.2], [0.6, 0.80, 0.2]])
TARGET = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float32)


def test_scores_against_hand_computation():
    metric = MultilabelMetrics(num_labels=3)
    metric.update(PROB, TARGET)
    out = metric.compute()
    # a: ranked hits at 1 and 3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # b: ranked hits at 1 (0.80) and 4 (0.10) -> AP = 1/2 * 1 + 1/2 * 2/4 = 3/4
    # c: no positive -> undefined, left out of the mean
    assert out["map"].item() == pytest.approx((5 / 6 + 3 / 4) / 2)
    # at 0.5: a tp 2 fp 2 fn 0 -> 2/3; b tp 1 fp 0 fn 1 -> 2/3; c tp = fp = fn = 0 -> left out
    assert out["f1"].item() == pytest.approx(2 / 3)


def test_single_defined_label():
    metric = MultilabelMetrics(2)
    metric.update(torch.tensor([[0.9, 0.1], [0.2, 0.3]]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    out = metric.compute()
    assert out["map"].item() == pytest.approx(1.0)
    assert out["f1"].item() == pytest.approx(1.0)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_accumulation_and_empty():
    whole, parts = MultilabelMetrics(3), MultilabelMetrics(3)
    whole.update(PROB, TARGET)
    parts.update(PROB[:1], TARGET[:1])
    parts.update(PROB[1:], TARGET[1:])
    for key, value in whole.compute().items():
        assert parts.compute()[key].item() == pytest.approx(value.item())
    assert math.isnan(MultilabelMetrics(3).compute()["map"].item())


def test_shape_is_checked():
    with pytest.raises(ValueError, match="B x 3"):
        MultilabelMetrics(3).update(torch.rand(2, 4), torch.zeros(2, 4))
