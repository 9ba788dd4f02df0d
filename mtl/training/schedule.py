"""LR schedule config: a scheduler factory plus how often it steps."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class LRSchedule:
    """`scheduler` is a partial taking the optimizer; `interval` is `step` or `epoch`.

    A scheduler that takes `total_steps` and leaves it unset (OneCycleLR) gets the number of
    optimizer steps of the run.
    """

    scheduler: Callable[..., Any] | None = None
    interval: str = "step"

    def __post_init__(self) -> None:
        if self.interval not in ("step", "epoch"):
            raise ValueError(f"scheduler.interval must be 'step' or 'epoch', got {self.interval!r}")

    def build(self, optimizer: torch.optim.Optimizer, total_steps: int) -> dict[str, Any] | None:
        """Lightning's `lr_scheduler` dict, or None for a constant LR."""
        if self.scheduler is None:
            return None
        kwargs = {}
        keywords = getattr(self.scheduler, "keywords", {})
        if "total_steps" in inspect.signature(self.scheduler).parameters and (
            keywords.get("total_steps") is None
        ):
            if self.interval != "step":
                raise ValueError("a scheduler that takes total_steps needs interval=step")
            kwargs["total_steps"] = total_steps
        return {"scheduler": self.scheduler(optimizer, **kwargs), "interval": self.interval}
