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
    """Whether every `.grad` is finite: one fused pass (GradScaler's kernel) and one sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    by_device: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for grad in grads:
        by_device.setdefault((grad.device, grad.dtype), []).append(grad)
    found = []
    for (device, _), group in by_device.items():
        flag = torch.zeros(1, device=device)
        # inv_scale 1 leaves the gradients as they are; only the flag is written
        torch._amp_foreach_non_finite_check_and_unscale_(group, flag, torch.ones(1, device=device))
        found.append(flag.to(grads[0].device))
    return not bool(torch.cat(found).any())


def describe(names: Sequence[str], losses: Tensor) -> str:
    """`seg=nan, cls=0.693` for a log line."""
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, losses.tolist(), strict=True))
