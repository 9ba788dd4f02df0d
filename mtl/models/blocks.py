"""Small building blocks shared by encoders, decoders and heads."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "instance", "group", "none")
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def make_norm(kind: str, channels: int, groups: int = 8) -> nn.Module:
    """Normalisation by name; `group` is the choice for exact DDP without SyncBatchNorm."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(groups, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}'; choose one of {NORMS}")


def make_activation(kind: str) -> nn.Module:
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{kind}'; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[kind](inplace=True) if kind != "gelu" else nn.GELU()


class ConvNormAct(nn.Sequential):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm: str = "batch",
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=norm == "none"),
            make_norm(norm, out_channels),
            make_activation(activation),
        )


class ConvBlock(nn.Sequential):
    """`depth` ConvNormAct layers; the first may downsample (stride 2), as in nnU-Net."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 2,
        stride: int = 1,
        norm: str = "batch",
        activation: str = "leaky_relu",
    ) -> None:
        layers = [ConvNormAct(in_channels, out_channels, stride, norm, activation)]
        layers += [
            ConvNormAct(out_channels, out_channels, 1, norm, activation) for _ in range(depth - 1)
        ]
        super().__init__(*layers)
