"""Hard parameter sharing: one shared encoder, one head (decoder) per task."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from torch import Tensor, nn

from mtl.models.architectures.base import EncoderFactory, MultiTaskNet, build_heads
from mtl.models.decoders import DecoderFactory
from mtl.tasks import Task


class HardParameterSharing(MultiTaskNet):
    """`model=hps`: shared encoder (w), task heads (b_t) - the standard MTL baseline."""

    representation = "the shared encoder's feature pyramid (every stage, for skip connections)"

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        decoder: DecoderFactory | None = None,
    ) -> None:
        super().__init__(tasks)
        self.encoder = encoder()
        self.heads = build_heads(tasks, self.encoder, decoder, self.guides)

    def encode(self, x: Tensor) -> list[Tensor]:
        return list(self.encoder(x))

    def decode(self, z: list[Tensor]) -> dict[str, Tensor]:
        return self.run_heads(self.heads, lambda name: z)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.encoder.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        yield from self.heads[task].parameters()
