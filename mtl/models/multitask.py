"""Multi-task networks: the shared encoder (parameters w) and one head per task (b_t)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from torch import Tensor, nn

from mtl.models.encoders import Encoder
from mtl.tasks import Task

SHARED = "shared"


class MultiTaskNet(nn.Module):
    """Hard parameter sharing (`share_encoder=True`, `model=hps`), or one independent
    network per task (`share_encoder=False`, `model=stl`) trained side by side.

    With STL and a sum of losses, each task's network only ever sees its own loss's
    gradient, so one run gives every single-task baseline.
    """

    def __init__(
        self,
        encoder: Callable[[], Encoder],
        tasks: Mapping[str, Task],
        share_encoder: bool = True,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a model needs at least one task")
        self.task_names = list(tasks)
        self.share_encoder = share_encoder
        if share_encoder:
            self.encoders = nn.ModuleDict({SHARED: encoder()})
        else:
            self.encoders = nn.ModuleDict({name: encoder() for name in self.task_names})
        self.heads = nn.ModuleDict()
        for name, task in tasks.items():
            enc = self.encoder_for(name)
            self.heads[name] = task.build_head(enc.channels, enc.reductions)

    def encoder_for(self, task: str) -> Encoder:
        return self.encoders[SHARED if self.share_encoder else task]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.share_encoder:
            return self.decode(self.encode(x))
        return {name: self.heads[name](self.encoders[name](x)) for name in self.task_names}

    def encode(self, x: Tensor) -> list[Tensor]:
        """The shared representation z (every encoder stage, for heads with skip connections):
        what `grad_source=features` differentiates the task losses with respect to."""
        if not self.share_encoder:
            raise ValueError("model=stl has no shared representation")
        return list(self.encoders[SHARED](x))

    def decode(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {name: self.heads[name](features) for name in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters every task's loss depends on (empty for STL)."""
        if self.share_encoder:
            yield from self.encoders[SHARED].parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        """Parameters only `task`'s loss depends on."""
        yield from self.heads[task].parameters()
        if not self.share_encoder:
            yield from self.encoders[task].parameters()
