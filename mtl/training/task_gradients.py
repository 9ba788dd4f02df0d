"""Per-task gradients, their reduction across DDP ranks, and writing an update into `.grad`.

Used by `MultiTaskModule`'s manual-optimisation step. Per-task gradients are taken with
`torch.autograd.grad`, which never runs the parameters' AccumulateGrad nodes, so DDP's
reducer (prepared only inside `manual_backward`) does not all-reduce them: we reduce once,
ourselves, exactly what the method needs (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """Mean over DDP ranks (a copy; the input is untouched). Identity on one process."""
    n = world_size()
    if n == 1:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / n


def per_task_gradients(
    losses: Sequence[Tensor], inputs: Sequence[Tensor], scale: float = 1.0
) -> Tensor:
    """(T, D) matrix: row i is d losses[i] / d inputs, flattened and concatenated (>= fp32).

    `scale` is the AMP loss scale: the backward runs on `scale * L_i` (so fp16 activations'
    gradients do not underflow) and the rows are unscaled before anyone looks at them.
    Inputs a task does not reach get zeros.
    """
    return task_gradients(losses, inputs, [() for _ in losses], scale)[0]


def task_gradients(
    losses: Sequence[Tensor],
    shared: Sequence[Tensor],
    own: Sequence[Sequence[Tensor]],
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Per-task gradients in block form: the (T, S) matrix of d losses[i] / d `shared`, and
    one (O,) vector holding, in task i's block, d losses[i] / d `own[i]`.

    `own[i]` are inputs only task i's loss reaches (its head): every other task's gradient
    there is zero, so a dense (T, O) matrix would be mostly zeros - T times the memory,
    copies and all-reduce traffic for the largest part of most networks. Blocks follow each
    other in task order (`own_sizes`). One backward per task, on its own graph; gradients
    are copied straight into the preallocated outputs (layout, dtype and placement in one
    pass), unscaled by `scale` (the AMP loss scale) at the end; unreached inputs get zeros.
    """
    shared, own = list(shared), [list(block) for block in own]
    first = next(x for x in (*shared, *(x for block in own for x in block)))
    dtype = torch.promote_types(first.dtype, torch.float32)
    shared_sizes = [x.numel() for x in shared]
    matrix = torch.zeros(len(losses), sum(shared_sizes), dtype=dtype, device=first.device)
    flat = torch.zeros(sum(own_sizes(own)), dtype=dtype, device=first.device)
    blocks = flat.split(own_sizes(own))
    for row, block, loss, inputs in zip(matrix, blocks, losses, own, strict=True):
        # separate graphs: each backward walks only what its own loss reaches
        grads = torch.autograd.grad(
            loss * scale, [*shared, *inputs], retain_graph=True, allow_unused=True
        )
        pieces = [*row.split(shared_sizes), *block.split([x.numel() for x in inputs])]
        for piece, g in zip(pieces, grads, strict=True):
            if g is not None:
                piece.view(g.shape).copy_(g)
    if scale != 1.0:
        matrix, flat = matrix / scale, flat / scale
    return matrix, flat


def own_sizes(own: Sequence[Sequence[Tensor]]) -> list[int]:
    """Entries of each task's block of task-specific gradients."""
    return [sum(x.numel() for x in block) for block in own]


def scale_blocks(flat: Tensor, sizes: Sequence[int], weights: Tensor) -> Tensor:
    """Task i's block of `flat` times weights[i]: what `weights @ G` gives for task-specific
    parameters, computed on the block form."""
    return torch.cat(
        [b * w for b, w in zip(flat.split(list(sizes)), weights.to(flat), strict=True)]
    )


def write_grads(params: Sequence[nn.Parameter], flat: Tensor) -> None:
    """Set `.grad` of `params` from one flat vector (in each parameter's dtype and layout)."""
    offset = 0
    for p in params:
        n = p.numel()
        chunk = flat[offset : offset + n].view(p.shape).to(p.dtype)
        if p.grad is None:
            p.grad = torch.empty_like(p)  # keeps channels_last strides
        p.grad.copy_(chunk)
        offset += n
    if offset != flat.numel():
        raise ValueError(f"gradient vector has {flat.numel()} entries, parameters need {offset}")


@contextmanager
def frozen_batchnorm_stats(module: nn.Module):
    """Forward in train mode (batch statistics) without updating running statistics: FAMO's
    extra forward must not move BatchNorm's running mean/var a second time per step."""
    saved = []
    for m in module.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            saved.append((m, m.momentum, m.num_batches_tracked.clone()))
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def cosine_matrix(gram: Tensor, eps: float = 1e-12) -> Tensor:
    """Pairwise cosine similarities of the task gradients from their Gramian."""
    norms = gram.diagonal().clamp_min(0).sqrt()
    return gram / (norms[:, None] * norms[None, :]).clamp_min(eps)
