"""`Weighting.step` is read every batch: it must not read the (GPU) buffer each time, and
must never be stale after a checkpoint load, an in-place change or a device move."""

from __future__ import annotations

import copy
import pickle

import torch

from mtl.weighting.base import EqualWeighting


def test_step_follows_step_done_without_reading_the_buffer(monkeypatch):
    weighting = EqualWeighting(["a", "b"])
    assert weighting.step == 0
    reads = []
    original = torch.Tensor.__int__
    monkeypatch.setattr(torch.Tensor, "__int__", lambda t: reads.append(1) or original(t))
    for _ in range(3):
        weighting.step_done()
        _ = weighting.step
    assert weighting.step == 3 and not reads  # no device read in the loop
    assert int(weighting.num_steps) == 3


def test_step_is_never_stale():
    weighting = EqualWeighting(["a", "b"])
    weighting.step_done()
    weighting.load_state_dict({"num_steps": torch.tensor(7)})
    assert weighting.step == 7
    weighting.num_steps.fill_(3)
    assert weighting.step == 3
    moved = weighting.to(torch.float64)
    assert moved.step == 3
    clone = copy.deepcopy(weighting)
    clone.step_done()
    assert (clone.step, weighting.step) == (4, 3)
    restored = pickle.loads(pickle.dumps(weighting))
    restored.step_done()
    assert restored.step == 4
