"""`EMAWeights` (callbacks=ema): the EMA arithmetic, its step schedule, and that it pickles
(ddp_spawn sends callbacks to the worker processes)."""

from __future__ import annotations

import pickle

import pytest
import torch

from mtl.training.weight_averaging import EMAUpdate, EMAWeights


def test_update_is_the_exponential_moving_average_in_place():
    averaged = [torch.tensor([1.0, 2.0]), torch.tensor([[4.0]])]
    current = [torch.tensor([3.0, 6.0]), torch.tensor([[0.0]])]
    EMAUpdate(0.75)(averaged, current, torch.tensor(1))
    torch.testing.assert_close(averaged[0], torch.tensor([1.5, 3.0]))  # 0.75 a + 0.25 c
    torch.testing.assert_close(averaged[1], torch.tensor([[3.0]]))


def test_integer_buffers_are_averaged_too():
    counts = [torch.tensor(8)]
    EMAUpdate(0.5)(counts, [torch.tensor(16)], torch.tensor(1))
    assert counts[0].item() == 12 and counts[0].dtype == torch.int64


def test_callback_pickles_and_keeps_its_settings():
    ema = pickle.loads(pickle.dumps(EMAWeights(decay=0.9, update_every_n_steps=2)))
    assert ema.decay == 0.9
    averaged, current = [torch.zeros(1)], [torch.ones(1)]
    ema.update(averaged, current, torch.tensor(1))
    torch.testing.assert_close(averaged[0], torch.tensor([0.1]))


def test_updates_from_the_start_step_every_n_steps():
    ema = EMAWeights(update_every_n_steps=2, update_starting_at_step=3)
    assert [s for s in range(10) if ema.should_update(step_idx=s)] == [4, 6, 8]
    assert not ema.should_update(epoch_idx=5)  # per step only


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"decay": 1.5}, "decay must be in"),
        ({"update_every_n_steps": 0}, "update_every_n_steps must be >= 1"),
        ({"update_starting_at_step": -1}, "update_starting_at_step >= 0"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EMAWeights(**kwargs)
