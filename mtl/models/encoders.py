"""Shared encoders. Each returns a feature pyramid (shallow to deep) and describes it with
`channels` and `reductions`, so any decoder, head or architecture can be built on any encoder.

`stage_modules()` exposes the encoder as a chain of stages (stage i maps stage i-1's output to
feature i); architectures that act between stages (cross-stitch) need it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from mtl.models.blocks import ConvBlock


class Encoder(nn.Module):
    """Interface: `forward(x) -> list[Tensor]`, `channels` and `reductions` per stage, and
    `stage_modules()`."""

    channels: list[int]
    reductions: list[int]

    def stage_modules(self) -> list[nn.Module]:
        """The encoder as a chain: `feature[i] = stage[i](feature[i-1])`, `feature[-1] = x`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be run stage by stage")


class UNetEncoder(Encoder):
    """A small nnU-Net-style encoder: conv blocks, stride-2 conv downsampling between stages.

    The first stage keeps full resolution so a decoder can resolve 2-px lesions;
    `stem_stride=2` starts at half resolution instead (a quarter of the high-resolution cost;
    dense heads upsample their logits back to the input size).
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        depth: int = 2,
        norm: str = "batch",
        activation: str = "leaky_relu",
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride={stem_stride} must be 1 (full resolution) or 2")
        if len(channels) < 2:
            raise ValueError(f"UNetEncoder needs >= 2 stages, got channels={list(channels)}")
        self.stages = nn.ModuleList()
        previous = in_channels
        for index, width in enumerate(channels):
            stride = stem_stride if index == 0 else 2
            self.stages.append(ConvBlock(previous, width, depth, stride, norm, activation))
            previous = width
        self.channels = list(channels)
        self.reductions = [stem_stride * 2**i for i in range(len(channels))]

    def stage_modules(self) -> list[nn.Module]:
        return list(self.stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class TimmEncoder(Encoder):
    """Any timm backbone by name via `features_only`; never downloads.

    Weights: random (default); `weights=<file>` loads a local timm checkpoint; `pretrained=true`
    without a file uses timm's own cache (Hugging Face hub cache) offline and fails with a
    message saying where to put the file if it is not there. For `in_channels` other than 3,
    timm adapts the first conv of RGB weights (1 channel: the sum of the RGB filters, so a
    grey image gives the response an RGB image with equal channels would).
    `output_stride=8|16` dilates the last stages (ResNets: DeepLab's dilated backbone).
    """

    def __init__(
        self,
        name: str = "resnet18",
        in_channels: int = 1,
        weights: str | None = None,
        pretrained: bool = False,
        out_indices: Sequence[int] | None = None,
        output_stride: int | None = None,
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
        if output_stride is not None:
            options["output_stride"] = int(output_stride)
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
        elif pretrained:
            self.model = _create_from_cache(name, options)
        else:
            self.model = timm.create_model(name, **options)
        self.channels = list(self.model.feature_info.channels())
        self.reductions = list(self.model.feature_info.reduction())
        # plain list: the same modules, grouped per stage, not registered a second time
        self._stage_groups: list[nn.Module] | None = None

    def stage_modules(self) -> list[nn.Module]:
        if self._stage_groups is None:
            self._stage_groups = _timm_stages(self.model)
        return self._stage_groups

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.model(x))


def _cached_weights(name: str) -> Path | None:
    """The file timm would load for `pretrained=True`, if it is already on this machine
    (Hugging Face hub cache or torch hub cache); looked up without any network access."""
    import timm
    import torch

    cfg = timm.create_model(name, pretrained=False, features_only=False).pretrained_cfg
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = hub_id.partition("@")
        names = [cfg.get("hf_hub_filename")] if cfg.get("hf_hub_filename") else []
        for filename in [*names, "model.safetensors", "pytorch_model.bin"]:
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
    url = cfg.get("url")
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if path.is_file():
            return path
    return None


def _create_from_cache(name: str, options: dict) -> nn.Module:
    import timm

    path = _cached_weights(name)
    if path is None:
        hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise FileNotFoundError(
            f"encoder.pretrained=true but no weights for timm model '{name}' are on this machine "
            f"(neither in the Hugging Face cache under HF_HOME={hf_home} "
            f"nor in the torch hub cache). Nothing is downloaded here: put the checkpoint file on "
            f"this machine and pass encoder.weights=/path/to/model.safetensors, or fill the cache "
            f"on a machine with network (python -c \"import timm; timm.create_model('{name}', "
            f'pretrained=True)") and copy it here; or train from scratch with '
            f"encoder.pretrained=false."
        )
    return timm.create_model(
        name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **options
    )


def _timm_stages(model: nn.Module) -> list[nn.Module]:
    """Split a timm `features_only` model into per-feature chains of its own modules."""
    return_layers = getattr(model, "return_layers", None)
    if isinstance(model, nn.ModuleDict) and return_layers:  # FeatureListNet / FeatureDictNet
        groups, current = [], []
        for key, module in model.items():
            current.append(module)
            if key in return_layers:
                groups.append(nn.Sequential(*current))
                current = []
        return groups
    stage_out = getattr(model, "_stage_out_idx", None)
    if stage_out is not None and getattr(model, "feature_hooks", None) is None:  # EfficientNet
        groups, current = [], [model.conv_stem, model.bn1]
        if 0 in stage_out:
            groups.append(nn.Sequential(*current))
            current = []
        for index, block in enumerate(model.blocks):
            current.append(block)
            if index + 1 in stage_out:
                groups.append(nn.Sequential(*current))
                current = []
        return groups
    raise NotImplementedError(
        f"timm model {type(model).__name__} exposes its features through hooks and cannot be "
        f"run stage by stage (needed by model=cross_stitch); use encoder=unet, a ResNet, "
        f"ConvNeXt or EfficientNet"
    )
