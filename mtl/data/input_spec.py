"""What a model trained on a data module expects as input, saved in its checkpoints.

`predict.py` must prepare a new image exactly as training prepared its slices, without the
training data at hand: the channels and how each is normalised (nnU-Net's rule by channel
name, with the training split's CT fingerprint), the in-plane spacing slices were resampled
to, the 2.5D context, the slice size the model saw, and the targets (classes) the heads
predict. Data modules that support prediction put `InputSpec.to_dict()` under
`"input_spec"` in their `state_dict()`, which Lightning stores in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mtl.data.normalization import CTFingerprint
from mtl.tasks import TargetSpec

SPEC_VERSION = 1


@dataclass(frozen=True)
class InputSpec:
    """`channel_names`: one per channel of one slice (before 2.5D stacking), named as in
    nnU-Net's `dataset.json` (`CT`, `noNorm`, `rgb_to_0_1`, anything else = per-image
    z-score). `target_spacing`: (row, column) mm slices were resampled to, None when training
    never resampled (synthetic CT). `patch_size`: (H, W) of the training slices."""

    channel_names: tuple[str, ...]
    context: int
    patch_size: tuple[int, int]
    target_spacing: tuple[float, float] | None
    fingerprints: Mapping[int, CTFingerprint] = field(default_factory=dict)
    targets: Mapping[str, TargetSpec] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return len(self.channel_names) * (2 * self.context + 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers: safe for `torch.load(weights_only=True)` and JSON."""
        return {
            "version": SPEC_VERSION,
            "channel_names": list(self.channel_names),
            "context": int(self.context),
            "patch_size": [int(s) for s in self.patch_size],
            "target_spacing": (
                None if self.target_spacing is None else [float(s) for s in self.target_spacing]
            ),
            "fingerprints": {str(c): fp.to_dict() for c, fp in self.fingerprints.items()},
            "targets": {name: _spec_to_dict(spec) for name, spec in self.targets.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        spacing = data.get("target_spacing")
        return cls(
            channel_names=tuple(str(n) for n in data["channel_names"]),
            context=int(data["context"]),
            patch_size=(int(data["patch_size"][0]), int(data["patch_size"][1])),
            target_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
            fingerprints={
                int(c): CTFingerprint.from_dict(d) for c, d in data["fingerprints"].items()
            },
            targets={name: _spec_from_dict(d) for name, d in data["targets"].items()},
        )


def _spec_to_dict(spec: TargetSpec) -> dict[str, Any]:
    out = asdict(spec)
    for key in ("class_names", "class_frequencies"):
        if out[key] is not None:
            out[key] = list(out[key])
    return out


def _spec_from_dict(data: Mapping[str, Any]) -> TargetSpec:
    names, freqs = data.get("class_names"), data.get("class_frequencies")
    return TargetSpec(
        kind=str(data["kind"]),
        num_classes=data.get("num_classes"),
        class_names=None if names is None else tuple(str(n) for n in names),
        ignore_index=data.get("ignore_index"),
        class_frequencies=None if freqs is None else tuple(float(f) for f in freqs),
    )
