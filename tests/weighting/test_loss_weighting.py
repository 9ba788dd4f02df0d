import pytest
import torch

from mtl.weighting import EqualWeighting, FixedWeighting


def test_equal_weighting_sums_losses():
    total, weights = EqualWeighting(["a", "b"])(torch.tensor([1.5, 2.0]))
    assert total.item() == pytest.approx(3.5)
    assert weights.tolist() == [1.0, 1.0]


def test_fixed_weighting_uses_config_and_default():
    w = FixedWeighting(["seg", "cls", "aux"], weights={"seg": 2.0, "cls": 0.5}, default=0.1)
    total, weights = w(torch.tensor([1.0, 2.0, 10.0]))
    assert weights.tolist() == pytest.approx([2.0, 0.5, 0.1])
    assert total.item() == pytest.approx(2.0 + 1.0 + 1.0)


def test_fixed_weighting_rejects_unknown_task_and_negative():
    with pytest.raises(ValueError, match=r"names tasks \['typo'\]"):
        FixedWeighting(["seg"], weights={"typo": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        FixedWeighting(["seg"], weights={"seg": -1.0})


def test_weights_are_saved_in_state_dict():
    w = FixedWeighting(["seg", "cls"], weights={"cls": 0.25})
    assert w.state_dict()["alpha"].tolist() == [1.0, 0.25]
