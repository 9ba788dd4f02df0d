"""What a non-finite loss or gradient does to a run: skip the update, or stop.

A NaN that reaches the optimizer ruins every weight and every later checkpoint, so the
module checks the (rank-averaged) task losses before any backward and the gradients before
the step. `skip` drops the whole optimizer step (the batch counts as if it never came; the
LR schedule and the weighting do not advance) and counts it; `stop` raises
`NonFiniteLossError`, leaving the checkpoints of the last good epoch untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

NONFINITE_POLICIES = ("skip", "stop")


class NonFiniteLossError(FloatingPointError):
    """Training stopped on a NaN/Inf loss or gradient; the message names the task and step."""


def nonfinite_tasks(names: Sequence[str], losses: Tensor) -> list[str]:
    """Names of the tasks whose loss is NaN or Inf (one host sync)."""
    finite = torch.isfinite(losses.detach()).tolist()
    return [name for name, ok in zip(names, finite, strict=True) if not ok]


def grads_finite(params: Iterable[torch.nn.Parameter]) -> bool:
    """Whether every `.grad` is finite, at one host sync.

    Fast path: the per-tensor L2 norms in one fused read-only pass (`_foreach_norm`); a NaN or
    Inf anywhere makes its norm non-finite, so finite norms prove finite gradients. Only when
    a norm is not finite (a bad step, or finite values so large that their squares overflow)
    does the exact elementwise check (GradScaler's kernel) decide.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for grad in grads:
        groups.setdefault((grad.device, grad.dtype), []).append(grad)
    norms = [torch.stack(torch._foreach_norm(group)).isfinite().all() for group in groups.values()]
    if bool(torch.stack([n.to(grads[0].device) for n in norms]).all()):
        return True
    return _grads_finite_exact(groups.values())


def tensors_finite(*tensors: Tensor) -> bool:
    """Whether every entry of `tensors` (e.g. per-task gradient matrices) is finite, at one
    host sync: their norms in one read pass each; only a non-finite norm (a bad step, or an
    overflow of huge finite values) falls back to the elementwise test, which takes several
    passes and temporaries on CPU."""
    norms = torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors])
    if bool(torch.isfinite(norms).all()):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _grads_finite_exact(groups: Iterable[list[Tensor]]) -> bool:
    """Elementwise check of every gradient (GradScaler's fused kernel), one flag per group."""
    found = []
    for group in groups:
        device = group[0].device
        # float32 flag and scale whatever the default dtype (64-true sets float64)
        flag = torch.zeros(1, device=device, dtype=torch.float32)
        one = torch.ones(1, device=device, dtype=torch.float32)
        # inv_scale 1 leaves the gradients as they are; only the flag is written
        torch._amp_foreach_non_finite_check_and_unscale_(group, flag, one)
        found.append(flag.cpu())
    return not bool(torch.cat(found).any())


def describe(names: Sequence[str], losses: Tensor) -> str:
    """`seg=nan, cls=0.693` for a log line."""
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, losses.tolist(), strict=True))
