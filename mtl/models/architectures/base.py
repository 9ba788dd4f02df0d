"""The interface every multi-task architecture implements.

The training loop needs four things from an architecture: the outputs per task, which
parameters every task's loss depends on (shared, `w`) and which only one task's does (`b_t`),
and - for `grad_source=features` - a representation `z` that cuts the graph between the two:
`forward(x) == decode(encode(x))`, and the task-specific part (`decode`) reads nothing but z.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping

from torch import Tensor, nn

from mtl.models.decoders import DecoderFactory
from mtl.models.encoders import Encoder
from mtl.models.guides import Guide, resolve_guides, run_heads
from mtl.tasks import Task

EncoderFactory = Callable[[], Encoder]


class MultiTaskNet(nn.Module, ABC):
    """Base class of `model=<architecture>`; add one by subclassing and a `conf/model` file.

    `representation` says in words what `encode` returns (shown in errors and the README);
    `shared_representation=False` marks architectures where z is not shared by the tasks, and
    `grad_source=features` is then refused.
    """

    representation: str = ""
    shared_representation: bool = True
    # whether a task's head may pool under another task's prediction (`mtl.models.guides`)
    supports_guides: bool = True

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.task_names = list(tasks)
        self.guides: dict[str, Guide] = resolve_guides(tasks) if self.supports_guides else {}

    def run_heads(
        self, heads: nn.ModuleDict, inputs: Callable[[str], list[Tensor]]
    ) -> dict[str, Tensor]:
        """Each task's head on `inputs(task)`, guided heads after their guides."""
        return run_heads(heads, self.task_names, self.guides, inputs)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.decode(self.encode(x))

    @abstractmethod
    def encode(self, x: Tensor) -> list[Tensor]:
        """The representation z (a list of tensors) every task's output is computed from."""

    @abstractmethod
    def decode(self, z: list[Tensor]) -> dict[str, Tensor]:
        """Task outputs from z, through task-specific parameters only."""

    @abstractmethod
    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters more than one task's loss depends on (the `w` of the weighting)."""

    @abstractmethod
    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """Parameters only `task`'s loss depends on (`b_t`)."""

    @property
    def has_shared_parameters(self) -> bool:
        return any(True for _ in self.shared_parameters())

    def parameter_counts(self) -> dict[str, int]:
        """`shared`, one entry per task, and `total` (every parameter counted once)."""
        counts = {"shared": sum(p.numel() for p in self.shared_parameters())}
        for name in self.task_names:
            counts[name] = sum(p.numel() for p in self.task_parameters(name))
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts


def build_heads(
    tasks: Mapping[str, Task],
    encoder: Encoder,
    decoder: DecoderFactory | None,
    guides: Mapping[str, Guide] | None = None,
) -> nn.ModuleDict:
    """One head per task, each built for `encoder`'s pyramid (guided where `guides` says)."""
    guides = guides or {}
    return nn.ModuleDict(
        {
            name: task.build_head(
                encoder.channels,
                encoder.reductions,
                decoder,
                **({"guided": True} if name in guides else {}),
            )
            for name, task in tasks.items()
        }
    )
