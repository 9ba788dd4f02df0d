"""Shared encoders. Each returns a feature pyramid (shallow to deep) and describes it with
`channels` and `reductions`, so any head or decoder can be built on any encoder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from mtl.models.blocks import ConvBlock


class Encoder(nn.Module):
    """Interface: `forward(x) -> list[Tensor]`, plus `channels` and `reductions` per stage."""

    channels: list[int]
    reductions: list[int]


class UNetEncoder(Encoder):
    """A small nnU-Net-style encoder: conv blocks, stride-2 conv downsampling between stages.

    The first stage keeps full resolution so a decoder can resolve 2-px lesions.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        depth: int = 2,
        norm: str = "batch",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"UNetEncoder needs >= 2 stages, got channels={list(channels)}")
        self.stages = nn.ModuleList()
        previous = in_channels
        for index, width in enumerate(channels):
            stride = 1 if index == 0 else 2
            self.stages.append(ConvBlock(previous, width, depth, stride, norm, activation))
            previous = width
        self.channels = list(channels)
        self.reductions = [2**i for i in range(len(channels))]

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class TimmEncoder(Encoder):
    """Any timm backbone by name via `features_only`; never downloads.

    Weights are random unless `weights` names a local file (timm adapts the first conv to
    `in_channels`, e.g. 1-channel CT, by summing the RGB filters).
    """

    def __init__(
        self,
        name: str = "resnet18",
        in_channels: int = 1,
        weights: str | None = None,
        out_indices: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        import timm

        if name not in timm.list_models():
            close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
            raise ValueError(f"timm has no model '{name}'; similar names: {close}")
        options = dict(features_only=True, in_chans=in_channels, **kwargs)
        if out_indices is not None:
            options["out_indices"] = tuple(out_indices)
        if weights is not None:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"encoder weights '{path}' not found; nothing is downloaded here. Put the "
                    f"timm checkpoint for '{name}' (e.g. pytorch_model.bin or "
                    f"model.safetensors) at that path, or set encoder.weights=null."
                )
            options.update(pretrained=True, pretrained_cfg_overlay={"file": str(path)})
        self.model = timm.create_model(name, **options)
        self.channels = list(self.model.feature_info.channels())
        self.reductions = list(self.model.feature_info.reduction())

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.model(x))
