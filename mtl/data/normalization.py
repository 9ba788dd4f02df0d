"""CT intensity normalisation as nnU-Net does it.

Fingerprint: the 0.5 / 99.5 percentiles, mean and std of *foreground* intensities (label > 0)
over the training split. Every image is clipped to the percentiles, then z-scored with the
foreground mean/std. The fingerprint is computed once, cached as JSON and saved in
checkpoints, so evaluation uses the numbers training used.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CTFingerprint:
    lower: float
    upper: float
    mean: float
    std: float
    num_voxels: int

    @classmethod
    def from_images(
        cls,
        pairs: Iterable[tuple[np.ndarray, np.ndarray]],
        percentiles: tuple[float, float] = (0.5, 99.5),
        max_per_image: int = 10_000,
        seed: int = 0,
    ) -> CTFingerprint:
        """Foreground statistics; like nnU-Net, at most `max_per_image` voxels per image."""
        rng = np.random.default_rng(seed)
        samples = []
        for image, mask in pairs:
            values = np.asarray(image)[np.asarray(mask) > 0]
            if values.size > max_per_image:
                values = rng.choice(values, max_per_image, replace=False)
            samples.append(values.astype(np.float64))
        if not samples or sum(s.size for s in samples) == 0:
            raise ValueError("no foreground voxels in the training split: cannot fingerprint CT")
        voxels = np.concatenate(samples)
        lower, upper = np.percentile(voxels, percentiles)
        clipped = np.clip(voxels, lower, upper)
        # nnU-Net takes mean/std of the raw foreground voxels; clipping first guards outliers
        return cls(
            lower=float(lower),
            upper=float(upper),
            mean=float(clipped.mean()),
            std=float(max(clipped.std(), 1e-8)),
            num_voxels=int(voxels.size),
        )

    def normalize(self, image: np.ndarray) -> np.ndarray:
        out = np.clip(image, self.lower, self.upper).astype(np.float32)
        out -= np.float32(self.mean)
        out /= np.float32(self.std)
        return out

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CTFingerprint:
        return cls(**{k: data[k] for k in ("lower", "upper", "mean", "std", "num_voxels")})

    def save(self, path: str | Path) -> None:
        """Atomic write: a crash never leaves a half-written cache."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> CTFingerprint:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"CT fingerprint cache '{path}' is corrupt ({err}); delete it to recompute"
            ) from err
