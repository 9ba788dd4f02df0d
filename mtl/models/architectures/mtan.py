"""Multi-task attention network (MTAN, Liu, Johns & Davison, CVPR 2019).

Each task owns a soft-attention module per encoder stage that selects, from the shared
stage output, the features the task needs: `a_t^j = sigmoid(f([z^j, g(a_t^{j-1} * z^{j-1})]))`,
task feature `a_t^j * z^j`. The paper places masks inside SegNet blocks; over any encoder we
place them on the stage outputs (the same idea on the features `encoder.channels` describes).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.models.architectures.base import EncoderFactory, MultiTaskNet, build_heads
from mtl.models.blocks import ConvNormAct, make_norm
from mtl.models.decoders import DecoderFactory
from mtl.tasks import Task


class TaskAttention(nn.Module):
    """One task's attention masks over a feature pyramid; returns the task's pyramid."""

    def __init__(
        self, channels: Sequence[int], hidden_divisor: int = 4, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.masks = nn.ModuleList()
        for j, width in enumerate(channels):
            inputs = width if j == 0 else 2 * width
            hidden = max(width // hidden_divisor, 8)
            self.masks.append(
                nn.Sequential(
                    nn.Conv2d(inputs, hidden, 1, bias=False),
                    make_norm(norm, hidden),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(hidden, width, 1, bias=False),
                    make_norm(norm, width),
                    nn.Sigmoid(),
                )
            )
        # g: carries the task's previous-stage feature to the next stage's width
        self.carry = nn.ModuleList(
            [ConvNormAct(a, b, norm=norm) for a, b in itertools.pairwise(channels)]
        )

    def forward(self, z: Sequence[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        previous: Tensor | None = None
        for j, (mask, shared) in enumerate(zip(self.masks, z, strict=True)):
            inputs = shared if previous is None else torch.cat([shared, previous], dim=1)
            feature = mask(inputs) * shared
            out.append(feature)
            if j < len(self.carry):
                previous = _pool_to(self.carry[j](feature), z[j + 1].shape[-2:])
        return out


def _pool_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Max-pool to `size` (MTAN's pooling between stages); a plain strided max pool when the
    sizes divide (adaptive pooling's backward is much slower on CPU)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h % size[0] == 0 and w % size[1] == 0 and h // size[0] == w // size[1]:
        return F.max_pool2d(x, h // size[0])
    return F.adaptive_max_pool2d(x, size)


class AttentiveHead(nn.Module):
    """Task attention followed by the task's usual head."""

    def __init__(self, attention: TaskAttention, head: nn.Module) -> None:
        super().__init__()
        self.attention = attention
        self.head = head

    def forward(self, z: Sequence[Tensor], **guide: Tensor) -> Tensor:
        return self.head(self.attention(z), **guide)


class MTAN(MultiTaskNet):
    """`model=mtan`: shared encoder (w); per task attention modules + head (b_t)."""

    representation = (
        "the shared encoder's feature pyramid, before the task attention (which is task-specific)"
    )

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        decoder: DecoderFactory | None = None,
        hidden_divisor: int = 4,
        norm: str = "batch",
    ) -> None:
        super().__init__(tasks)
        if hidden_divisor < 1:
            raise ValueError(f"model.hidden_divisor must be >= 1, got {hidden_divisor}")
        self.encoder = encoder()
        heads = build_heads(tasks, self.encoder, decoder, self.guides)
        self.heads = nn.ModuleDict(
            {
                name: AttentiveHead(
                    TaskAttention(self.encoder.channels, hidden_divisor, norm), heads[name]
                )
                for name in self.task_names
            }
        )

    def encode(self, x: Tensor) -> list[Tensor]:
        return list(self.encoder(x))

    def decode(self, z: list[Tensor]) -> dict[str, Tensor]:
        return self.run_heads(self.heads, lambda name: z)

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.encoder.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        yield from self.heads[task].parameters()
