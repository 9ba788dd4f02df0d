"""Cross-stitch networks (Misra, Shrivastava, Gupta & Hebert, CVPR 2016).

One encoder column per task; after every stage a cross-stitch unit mixes the columns'
features with learned weights, `x~_t = sum_s alpha_ts * x_s` (per channel here), initialised
near the identity (`alpha_tt = init_self`) so training starts close to single-task networks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from mtl.models.architectures.base import EncoderFactory, MultiTaskNet, build_heads
from mtl.models.decoders import DecoderFactory
from mtl.tasks import Task


class CrossStitchUnit(nn.Module):
    """Learned per-channel linear mixing of T same-shaped feature maps."""

    def __init__(self, num_tasks: int, channels: int, init_self: float = 0.9) -> None:
        super().__init__()
        if not 0.0 <= init_self <= 1.0:
            raise ValueError(f"model.init_self must be in [0, 1], got {init_self}")
        other = (1.0 - init_self) / (num_tasks - 1) if num_tasks > 1 else 0.0
        alpha = torch.full((num_tasks, num_tasks, channels), other)
        alpha[torch.arange(num_tasks), torch.arange(num_tasks)] = init_self
        self.alpha = nn.Parameter(alpha)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        stacked = torch.stack(xs)  # T x B x C x H x W
        mixed = torch.einsum("tsc,sbchw->tbchw", self.alpha.to(stacked.dtype), stacked)
        return list(mixed.unbind(0))


class CrossStitch(MultiTaskNet):
    """`model=cross_stitch`: task columns + cross-stitch units (shared: every task's loss
    depends on every column through the units), task heads (b_t).

    No representation is shared: head t reads only column t's (stitched) features, so
    per-task gradients w.r.t. them never overlap and `grad_source=features` is refused; use
    `grad_source=params`.
    """

    representation = (
        "none shared: each task's head reads its own column's stitched pyramid; "
        "gradient methods use grad_source=params (columns + cross-stitch units)"
    )
    shared_representation = False

    def __init__(
        self,
        encoder: EncoderFactory,
        tasks: Mapping[str, Task],
        decoder: DecoderFactory | None = None,
        init_self: float = 0.9,
    ) -> None:
        super().__init__(tasks)
        self.columns = nn.ModuleDict({name: encoder() for name in self.task_names})
        first = self.columns[self.task_names[0]]
        for column in self.columns.values():
            column.stage_modules()  # fails early, naming the encoder, if it cannot be split
        self.stitches = nn.ModuleList(
            [CrossStitchUnit(len(self.task_names), c, init_self) for c in first.channels]
        )
        self.heads = build_heads(tasks, first, decoder, self.guides)
        self.num_stages = len(first.channels)

    def encode(self, x: Tensor) -> list[Tensor]:
        """Every task's stitched pyramid, task-major (T x stages tensors)."""
        stages = [self.columns[name].stage_modules() for name in self.task_names]
        xs = [x] * len(self.task_names)
        pyramids: list[list[Tensor]] = [[] for _ in self.task_names]
        for j, stitch in enumerate(self.stitches):
            xs = stitch([column[j](h) for column, h in zip(stages, xs, strict=True)])
            for pyramid, h in zip(pyramids, xs, strict=True):
                pyramid.append(h)
        return [h for pyramid in pyramids for h in pyramid]

    def decode(self, z: list[Tensor]) -> dict[str, Tensor]:
        s = self.num_stages
        column = {name: t for t, name in enumerate(self.task_names)}
        return self.run_heads(self.heads, lambda name: z[column[name] * s : (column[name] + 1) * s])

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.columns.parameters()
        yield from self.stitches.parameters()

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        yield from self.heads[task].parameters()
