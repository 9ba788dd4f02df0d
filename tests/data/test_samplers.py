"""Class-aware samplers on hand-made per-sample metadata: what they draw (class shares, the
forced foreground of every batch), how ranks share one draw, and the errors of bad configs."""

from __future__ import annotations

import numpy as np
import pytest
from lightning import Trainer
from lightning.pytorch.trainer.states import RunningStage
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from mtl.data.base import MultiTaskDataModule
from mtl.data.sample_metadata import MISSING
from mtl.data.samplers import (
    EpochSampler,
    SamplerConfigError,
    Sampling,
    forced_count,
    inverse_frequency_weights,
)
from mtl.tasks import TargetSpec

SPECS = {
    "seg": TargetSpec("segmentation", 3, ("background", "organ", "lesion"), 255),
    "cls": TargetSpec("classification", 3, ("none", "benign", "malignant")),
}


class FakeSlices:
    """Metadata only: a class label per sample and pixel counts per class."""

    def __init__(self, labels: np.ndarray, counts: np.ndarray) -> None:
        self.labels, self.counts = labels, counts

    def __len__(self) -> int:
        return len(self.labels)

    def class_labels(self, target: str) -> np.ndarray:
        assert target == "cls"
        return self.labels

    def class_pixel_counts(self, target: str) -> np.ndarray:
        assert target == "seg"
        return self.counts


def imbalanced(n: int = 1000) -> FakeSlices:
    """Labels 90 / 9 / 1 %; organ in 10 % of samples, lesion in 2 % (rare foreground)."""
    labels = np.zeros(n, dtype=np.int64)
    labels[: n * 9 // 100] = 1
    labels[n * 9 // 100 : n // 10] = 2
    counts = np.zeros((n, 3), dtype=np.int64)
    counts[:, 0] = 100
    counts[n // 2 : n // 2 + n // 10, 1] = 5
    counts[n - n // 50 :, 2] = 3
    return FakeSlices(labels, counts)


def drawn(sampler: EpochSampler, epochs: int = 3) -> np.ndarray:
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out.extend(iter(sampler))
    return np.asarray(out)


def batches(sampler: EpochSampler, batch: int, epochs: int = 3) -> np.ndarray:
    """(batches, batch) indices as a loader with drop_last yields them over `epochs`."""
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        stream = np.asarray(list(sampler))
        out.append(stream[: len(stream) // batch * batch].reshape(-1, batch))
    return np.concatenate(out)


def label_shares(data: FakeSlices, indices: np.ndarray) -> np.ndarray:
    return np.bincount(data.labels[indices], minlength=3) / len(indices)


def test_weighted_sampler_moves_class_shares_towards_uniform():
    data = imbalanced()
    none = label_shares(data, drawn(Sampling().build(data, batch_size=16)))
    soft = label_shares(
        data, drawn(Sampling(weight_target="cls", power=0.5).build(data, batch_size=16))
    )
    full = label_shares(data, drawn(Sampling(weight_target="cls").build(data, batch_size=16)))
    assert none == pytest.approx([0.90, 0.09, 0.01], abs=1e-9)  # a permutation per epoch
    # power 1: each class a third (3000 draws: a few % of sampling noise)
    assert full == pytest.approx([1 / 3] * 3, abs=0.04)
    # power 0.5 softens: class shares ~ sqrt(n_c): 30 : 9.5 : 3.2 -> 0.70 / 0.22 / 0.074
    assert soft == pytest.approx([0.703, 0.222, 0.074], abs=0.03)
    assert none[2] < soft[2] < full[2]


def test_unlabelled_samples_keep_their_natural_share():
    labels = np.array([0] * 60 + [1] * 20 + [MISSING] * 20)
    p = inverse_frequency_weights(labels, power=1.0)
    assert p.sum() == pytest.approx(1.0)
    assert p[labels == MISSING].sum() == pytest.approx(0.2)
    assert p[labels == 0].sum() == pytest.approx(p[labels == 1].sum())
    with pytest.raises(SamplerConfigError, match="no training sample has a class label"):
        inverse_frequency_weights(np.full(5, MISSING), power=1.0)


def test_foreground_sampler_forces_foreground_into_every_batch():
    data, batch = imbalanced(), 16
    has_fg = data.counts[:, 1:].sum(axis=1) > 0  # 12 % of samples
    k = forced_count(0.33, batch)
    assert k == 6
    for name, sampling in (
        ("none", Sampling()),
        ("foreground", Sampling(foreground_target="seg", foreground_fraction=0.33)),
    ):
        seen = batches(sampling.build(data, batch_size=batch), batch)
        per_batch = has_fg[seen].sum(axis=1)
        if name == "none":
            assert per_batch.min() < k  # uniform draws leave batches short of foreground
            none_lesion = data.counts[seen, 2].astype(bool).mean()
        else:
            assert per_batch.min() >= k
            # classes drawn uniformly among the foreground classes: lesion (2 % of samples)
            # fills about half of the forced places
            lesion = data.counts[seen, 2].astype(bool).mean()
            assert lesion == pytest.approx(0.5 * k / batch + 0.02 * (batch - k) / batch, abs=0.03)
            assert lesion > 5 * none_lesion


def test_weighted_foreground_balances_the_rest_of_the_batch():
    data, batch = imbalanced(), 16
    sampling = Sampling(weight_target="cls", foreground_target="seg")
    seen = batches(sampling.build(data, batch_size=batch), batch)
    has_fg = data.counts[:, 1:].sum(axis=1) > 0
    assert has_fg[seen].sum(axis=1).min() >= forced_count(0.33, batch)
    free = seen[:, forced_count(0.33, batch) :].ravel()
    assert label_shares(data, free) == pytest.approx([1 / 3] * 3, abs=0.05)


def test_ranks_take_disjoint_shares_of_one_draw_per_seed_and_epoch():
    data = imbalanced(300)
    for kwargs in ({}, {"weight_target": "cls"}, {"foreground_target": "seg"}):
        sampling = Sampling(seed=7, **kwargs)
        ranks = [sampling.build(data, batch_size=4, rank=r, world_size=3) for r in range(3)]
        for epoch in (0, 1):
            for sampler in ranks:
                sampler.set_epoch(epoch)
            streams = [list(s) for s in ranks]
            assert all(len(s) == len(r) == 100 for s, r in zip(streams, ranks, strict=True))
            # rank r takes positions r, r + 3, ... of one global draw
            assert np.array_equal(np.stack(streams, axis=1), ranks[0].global_draw(epoch))
            again = sampling.build(data, batch_size=4, rank=1, world_size=3)
            again.set_epoch(epoch)
            assert list(again) == streams[1]  # deterministic per (seed, epoch)
            if not kwargs:  # uniform: the ranks split one permutation, so no sample twice
                union = np.concatenate(streams)
                assert len(union) == len(set(union.tolist())) == 300
        assert not np.array_equal(ranks[0].global_draw(0), ranks[0].global_draw(1))
    other_seed = Sampling(seed=8).build(data, batch_size=4, rank=0, world_size=3)
    assert not np.array_equal(other_seed.global_draw(0), ranks[0].global_draw(0))


def test_each_rank_gets_the_forced_foreground_in_its_own_batches():
    data, batch = imbalanced(), 8
    has_fg = data.counts[:, 1:].sum(axis=1) > 0
    sampling = Sampling(foreground_target="seg", foreground_fraction=0.5)
    for rank in range(2):
        sampler = sampling.build(data, batch_size=batch, rank=rank, world_size=2)
        stream = np.asarray(list(sampler))[: (len(sampler) // batch) * batch]
        assert has_fg[stream.reshape(-1, batch)].sum(axis=1).min() >= 4


def test_num_samples_and_padding_across_ranks():
    data = imbalanced(10)
    sampler = Sampling(num_samples=25).build(data, batch_size=4, rank=0, world_size=2)
    assert len(sampler) == 13 and sampler.total_size == 26  # rounded up, as DistributedSampler
    assert sorted(Sampling().build(data, batch_size=4)) == list(range(10))


def test_lightning_keeps_our_sampler_under_ddp():
    """Lightning replaces any training sampler that is not a DistributedSampler by its own
    under DDP (dropping the rebalancing); ours must pass through untouched."""
    data = imbalanced(40)
    ours = DataLoader(
        data, batch_size=4, sampler=Sampling(weight_target="cls").build(data, batch_size=4)
    )
    assert isinstance(ours.sampler, DistributedSampler)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)
    connector = trainer._data_connector
    assert connector._prepare_dataloader(ours, shuffle=True, mode=RunningStage.TRAINING) is ours
    plain = DataLoader(data, batch_size=4, sampler=WeightedRandomSampler([1.0] * 40, 40))
    replaced = connector._prepare_dataloader(plain, shuffle=True, mode=RunningStage.TRAINING)
    assert replaced is not plain  # the check above can fail


def test_bad_configs_fail_clearly():
    with pytest.raises(SamplerConfigError, match=r"needs a classification target.*'lesion'"):
        Sampling(weight_target="lesion").check(SPECS)
    with pytest.raises(SamplerConfigError, match=r"'seg' is of kind 'segmentation'.*\['cls'\]"):
        Sampling(weight_target="seg").check(SPECS)
    with pytest.raises(SamplerConfigError, match=r"foreground sampler needs a segmentation"):
        Sampling(foreground_target="seg").check({"cls": SPECS["cls"]})
    with pytest.raises(SamplerConfigError, match="background=5 is not a class"):
        Sampling(foreground_target="seg", background=5).check(SPECS)
    with pytest.raises(SamplerConfigError, match="foreground_fraction must be in"):
        Sampling(foreground_fraction=1.5)
    with pytest.raises(SamplerConfigError, match="power must be >= 0"):
        Sampling(power=-1)
    empty = FakeSlices(np.zeros(8, dtype=np.int64), np.tile([[10, 0, 0]], (8, 1)))
    with pytest.raises(SamplerConfigError, match="no training sample contains foreground"):
        Sampling(foreground_target="seg").build(empty, batch_size=4)

    class NoMetadata(list):
        pass

    with pytest.raises(SamplerConfigError, match="cannot report per-sample class labels"):
        Sampling(weight_target="cls").build(NoMetadata(range(8)), batch_size=4)


def test_rebalancing_sampler_refuses_a_fixed_training_order():
    dm = MultiTaskDataModule(shuffle_train=False)
    dm.set_sampling(Sampling())  # uniform: fixed order wins, nothing is rebalanced
    with pytest.raises(SamplerConfigError, match=r"shuffle_train=false .* sampler=none"):
        dm.set_sampling(Sampling(weight_target="cls"))
