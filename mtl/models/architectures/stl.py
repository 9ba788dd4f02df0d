"""Single-task learning: one independent network per task, trained side by side."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from torch import Tensor, nn

from mtl.models.architectures.base import EncoderFactory, MultiTaskNet
from mtl.models.decoders import DecoderFactory
from mtl.tasks import Task


class SingleTaskNets(MultiTaskNet):
    """`model=stl`: each task its own encoder and head.

    With a sum of losses (weighting=ew) each network only ever sees its own loss's gradient,
    so one run trains every single-task baseline of an experiment at once (what delta_m
    needs); it shares nothing, so it has no shared representation and gradient methods
    have nothing to combine.
    """

    representation = "none: every task has its own encoder"
    shared_representation = False
    supports_guides = False  # a single-task baseline never reads another task's prediction

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        decoder: DecoderFactory | None = None,
    ) -> None:
        super().__init__(tasks)
        self.encoders = nn.ModuleDict({name: encoder() for name in self.task_names})
        self.heads = nn.ModuleDict(
            {
                name: task.build_head(
                    self.encoders[name].channels, self.encoders[name].reductions, decoder
                )
                for name, task in tasks.items()
            }
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {name: self.heads[name](self.encoders[name](x)) for name in self.task_names}

    def encode(self, x: Tensor) -> list[Tensor]:
        raise ValueError("model=stl has no shared representation (every task has its own encoder)")

    def decode(self, z: list[Tensor]) -> dict[str, Tensor]:
        raise ValueError("model=stl has no shared representation (every task has its own encoder)")

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from ()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        yield from self.encoders[task].parameters()
        yield from self.heads[task].parameters()
