"""Decoders turn an encoder's feature pyramid into one dense feature map.

Every decoder is built as `decoder(channels, reductions)` from the encoder's description
(`conf/decoder/*.yaml` are partials), and reports `out_channels` and `out_reduction` (the
stride of its output relative to the input). `DenseHead` projects to the task's channels and
upsamples the projection to input resolution, which is cheaper than upsampling features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.models.blocks import ConvBlock, ConvNormAct, make_activation, make_norm


class Decoder(nn.Module):
    """Interface: `forward(features) -> Tensor` with `out_channels` at `out_reduction`."""

    out_channels: int
    out_reduction: int


DecoderFactory = Callable[[Sequence[int], Sequence[int]], Decoder]


def _check_pyramid(channels: Sequence[int], reductions: Sequence[int], who: str) -> None:
    if len(channels) != len(reductions) or len(channels) < 2:
        raise ValueError(f"a {who} decoder needs >= 2 encoder stages with matching reductions")


class UNetDecoder(Decoder):
    """U-Net decoder: upsample, concatenate the skip, convolve; stage by stage to the top.

    The output has the last decoder width at the shallowest feature's resolution.
    """

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        decoder_channels: Sequence[int] | None = None,
        depth: int = 2,
        norm: str = "batch",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        _check_pyramid(channels, reductions, "U-Net")
        skips = list(channels[:-1])
        widths = list(decoder_channels) if decoder_channels is not None else skips
        if len(widths) != len(skips):
            raise ValueError(
                f"decoder_channels needs {len(skips)} entries (one per skip), got {len(widths)}"
            )
        self.stages = nn.ModuleList()
        below = channels[-1]
        for skip, width in zip(reversed(skips), reversed(widths), strict=True):
            self.stages.append(ConvBlock(below + skip, width, depth, 1, norm, activation))
            below = width
        self.out_channels = below
        self.out_reduction = int(reductions[0])

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        for stage, skip in zip(self.stages, reversed(features[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        return x


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3): parallel dilated convs + image pooling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        rates: Sequence[int],
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()

        def branch(kernel: int, rate: int) -> nn.Module:
            pad = 0 if kernel == 1 else rate
            return nn.Sequential(
                nn.Conv2d(
                    in_channels, out_channels, kernel, padding=pad, dilation=rate, bias=False
                ),
                make_norm(norm, out_channels),
                make_activation(activation),
            )

        self.branches = nn.ModuleList([branch(1, 1)] + [branch(3, int(r)) for r in rates])
        # image pooling has a 1x1 map: GroupNorm/none are safe there, BatchNorm needs batch > 1
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            make_norm("group" if norm == "batch" else norm, out_channels),
            make_activation(activation),
        )
        self.project = nn.Sequential(
            nn.Conv2d(out_channels * (len(rates) + 2), out_channels, 1, bias=False),
            make_norm(norm, out_channels),
            make_activation(activation),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x).expand(-1, -1, *x.shape[-2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3PlusDecoder(Decoder):
    """DeepLabV3+ (Chen et al. 2018): ASPP on the deepest feature, upsampled and fused with a
    low-level feature (the stage nearest `low_level_reduction`, stride 4 in the paper).

    Rates (6, 12, 18) are the paper's for output stride 16; use (12, 24, 36) with a
    dilated backbone at output stride 8, and smaller ones for small inputs.
    """

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        aspp_channels: int = 256,
        aspp_rates: Sequence[int] = (6, 12, 18),
        low_level_reduction: int = 4,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        _check_pyramid(channels, reductions, "DeepLabV3+")
        shallow = [i for i in range(len(channels) - 1)]
        self.low_index = min(shallow, key=lambda i: abs(reductions[i] - low_level_reduction))
        self.aspp = ASPP(channels[-1], aspp_channels, aspp_rates, norm, activation, dropout)
        self.low = ConvNormAct(
            channels[self.low_index], low_level_channels, norm=norm, activation=activation
        )
        self.fuse = nn.Sequential(
            ConvNormAct(
                aspp_channels + low_level_channels,
                decoder_channels,
                norm=norm,
                activation=activation,
            ),
            ConvNormAct(decoder_channels, decoder_channels, norm=norm, activation=activation),
        )
        self.out_channels = decoder_channels
        self.out_reduction = int(reductions[self.low_index])

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        low = self.low(features[self.low_index])
        x = self.aspp(features[-1])
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, low], dim=1))


class FPNDecoder(Decoder):
    """Feature pyramid network (Lin et al. 2017) with the semantic-segmentation merge of
    Panoptic FPN: lateral 1x1 + top-down sum per level, a 3x3 conv per level, all levels
    upsampled to the finest used one and summed.

    `min_reduction` drops stages finer than it (stride 1-2 stages cost much, add little).
    """

    def __init__(
        self,
        channels: Sequence[int],
        reductions: Sequence[int],
        pyramid_channels: int = 128,
        min_reduction: int = 4,
        norm: str = "batch",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        _check_pyramid(channels, reductions, "FPN")
        used = [i for i, r in enumerate(reductions) if r >= min_reduction]
        if len(used) < 1:
            used = [len(channels) - 1]
        if len(used) < 2 and len(channels) >= 2:
            used = list(range(len(channels) - 2, len(channels)))
        self.used = used
        self.lateral = nn.ModuleList([nn.Conv2d(channels[i], pyramid_channels, 1) for i in used])
        self.smooth = nn.ModuleList(
            [
                ConvNormAct(pyramid_channels, pyramid_channels, norm=norm, activation=activation)
                for _ in used
            ]
        )
        self.out_channels = pyramid_channels
        self.out_reduction = int(reductions[used[0]])

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        levels = [lat(features[i]) for lat, i in zip(self.lateral, self.used, strict=True)]
        for j in range(len(levels) - 2, -1, -1):  # top-down pathway
            up = F.interpolate(levels[j + 1], size=levels[j].shape[-2:], mode="nearest")
            levels[j] = levels[j] + up
        size = levels[0].shape[-2:]
        out = self.smooth[0](levels[0])
        for smooth, level in zip(self.smooth[1:], levels[1:], strict=True):
            out = out + F.interpolate(
                smooth(level), size=size, mode="bilinear", align_corners=False
            )
        return out


class DenseHead(nn.Module):
    """Decoder + 1x1 projection, upsampled to input resolution: per-pixel outputs
    (segmentation logits, depth, normals, boundary logits)."""

    def __init__(self, decoder: Decoder, out_channels: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.project = nn.Conv2d(decoder.out_channels, out_channels, 1)
        self.scale = int(decoder.out_reduction)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = self.project(self.decoder(features))
        if self.scale > 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return x
