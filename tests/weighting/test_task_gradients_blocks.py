"""Per-task gradients in block form (task-specific parameters: one block per task) hold the
same numbers as the dense (T, params) matrix, and combine to the same update."""

from __future__ import annotations

import torch

from mtl.training.task_gradients import (
    own_sizes,
    per_task_gradients,
    scale_blocks,
    task_gradients,
)


def _toy():
    torch.manual_seed(0)
    shared = torch.nn.Parameter(torch.randn(3, 4))
    heads = [torch.nn.Parameter(torch.randn(4, 2)), torch.nn.Parameter(torch.randn(4))]
    x = torch.randn(5, 3)
    z = torch.tanh(x @ shared)
    losses = [(z @ heads[0]).pow(2).mean(), (z @ heads[1]).sin().sum()]
    return losses, shared, heads


def test_blocks_equal_the_dense_matrix():
    losses, shared, heads = _toy()
    dense = per_task_gradients(losses, [shared, *heads], scale=4.0)
    matrix, own = task_gradients(losses, [shared], [[heads[0]], [heads[1]]], scale=4.0)
    n = shared.numel()
    torch.testing.assert_close(matrix, dense[:, :n])
    sizes = own_sizes([[heads[0]], [heads[1]]])
    assert sizes == [8, 4]
    # task i's block is row i of the dense matrix on its own head; other rows are zero there
    torch.testing.assert_close(own[:8], dense[0, n : n + 8])
    torch.testing.assert_close(own[8:], dense[1, n + 8 :])
    assert dense[1, n : n + 8].abs().sum() == 0 and dense[0, n + 8 :].abs().sum() == 0
    weights = torch.tensor([0.3, 1.7])
    torch.testing.assert_close(scale_blocks(own, sizes, weights), weights @ dense[:, n:])
