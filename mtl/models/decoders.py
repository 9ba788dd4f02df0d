"""Decoders turn an encoder's feature pyramid into a dense map at input resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.models.blocks import ConvBlock


class UNetDecoder(nn.Module):
    """U-Net decoder: upsample, concatenate the skip, convolve; stage by stage to the top.

    `channels` and `reductions` describe the encoder's outputs, shallow to deep. The output has
    `out_channels` channels (last decoder width) at the shallowest feature's resolution, and is
    upsampled to input resolution if that feature is itself downsampled (timm backbones).
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
        if len(channels) != len(reductions) or len(channels) < 2:
            raise ValueError("a U-Net decoder needs >= 2 encoder stages with matching reductions")
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
        self.top_reduction = reductions[0]

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        for stage, skip in zip(self.stages, reversed(features[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        if self.top_reduction > 1:
            x = F.interpolate(
                x, scale_factor=self.top_reduction, mode="bilinear", align_corners=False
            )
        return x


class DenseHead(nn.Module):
    """Decoder + 1x1 projection: per-pixel outputs (segmentation logits, depth, normals...)."""

    def __init__(self, decoder: UNetDecoder, out_channels: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.project = nn.Conv2d(decoder.out_channels, out_channels, 1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.project(self.decoder(features))
