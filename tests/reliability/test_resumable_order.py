"""The training order is a function of (seed, epoch) and skips what a checkpoint trained on."""

from __future__ import annotations

import torch

from mtl.data.resumable import ResumableSampler, batch_seed, reseed_for_batch


def test_order_depends_on_seed_and_epoch_only():
    a, b = ResumableSampler(range(50), seed=3), ResumableSampler(range(50), seed=3)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(123)  # the global RNG does not matter
    assert list(b) == first
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == list(range(50))


def test_resume_skips_the_consumed_samples_of_that_epoch_once():
    sampler = ResumableSampler(range(40), seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.resume_at(epoch=2, samples=16)
    assert list(sampler) == full[16:]
    assert list(sampler) == full  # the next pass of the epoch is whole again


def test_resume_in_a_later_epoch_does_not_skip_an_earlier_one():
    sampler = ResumableSampler(range(40), seed=0)
    sampler.resume_at(epoch=3, samples=8)
    assert len(list(sampler)) == 40  # epoch 0
    sampler.set_epoch(3)
    assert len(list(sampler)) == 32


def test_ranks_share_one_permutation_disjointly():
    shards = [list(ResumableSampler(range(40), 2, rank, seed=5)) for rank in (0, 1)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(40))


def test_batch_reseeding_is_deterministic_and_distinct():
    reseed_for_batch(7, 11)
    a = torch.rand(3)
    reseed_for_batch(7, 11)
    assert torch.equal(torch.rand(3), a)
    seeds = {batch_seed(7, n, r) for n in range(100) for r in range(4)}
    assert len(seeds) == 400
