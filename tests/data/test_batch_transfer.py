"""What the data modules do to a batch before it leaves the host, and how loaders are set."""

from __future__ import annotations

import torch

from mtl.data.base import MultiTaskDataModule


def test_all_labelled_masks_are_dropped_before_transfer():
    batch = {
        "image": torch.zeros(3, 1, 4, 4),
        "has_target": {
            "seg": torch.tensor([True, True, True]),
            "cls": torch.tensor([1, 0, 1]).bool(),
        },
    }
    out = MultiTaskDataModule().on_before_batch_transfer(batch, 0)
    # a missing mask means "all labelled" to Task.masked_loss and update_metrics
    assert list(out["has_target"]) == ["cls"]
    assert out["has_target"]["cls"].tolist() == [True, False, True]


def test_pin_memory_defaults_to_cuda_with_workers():
    data = MultiTaskDataModule()
    data.num_workers = 2
    assert data.pins_memory is False  # no trainer, so no CUDA device to feed
    data.pin_memory = True
    assert data.pins_memory is True
