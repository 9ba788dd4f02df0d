"""Per-class loss weights from the class frequencies of the training split.

- `inverse`: w_c = 1 / (K f_c), scikit-learn's "balanced" (also accepted under that name):
  every class carries the same total weight, and the frequency-weighted mean weight is 1.
- `median`: w_c = median(f) / f_c, median frequency balancing (Eigen & Fergus 2015): the class
  of median frequency gets weight 1; milder than `inverse` for very rare classes in
  segmentation, where the shares span orders of magnitude.

f_c is the share of class c among the labelled samples (classification) or pixels
(segmentation) of the training split, reported by the data module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

FREQUENCY_MODES = ("inverse", "median", "balanced")


def class_weights_from_frequencies(frequencies: Sequence[float] | Tensor, mode: str) -> Tensor:
    """Weights for `mode` (one of `FREQUENCY_MODES`); every class must occur (f_c > 0)."""
    if mode not in FREQUENCY_MODES:
        raise ValueError(f"class weight mode must be one of {FREQUENCY_MODES}, got {mode!r}")
    freq = torch.as_tensor(frequencies, dtype=torch.float64)
    if freq.ndim != 1 or freq.numel() == 0 or not torch.isfinite(freq).all():
        raise ValueError(f"class frequencies must be a finite 1-D sequence, got {frequencies}")
    absent = (freq <= 0).nonzero().flatten().tolist()
    if absent:
        raise ValueError(
            f"classes {absent} never occur in the training split, so {mode} weights are "
            f"infinite; give one weight per class instead"
        )
    if mode == "median":
        # quantile(0.5), not torch.median (the lower middle value): an even count's mean
        return (freq.quantile(0.5) / freq).float()
    return (1.0 / (freq.numel() * freq)).float()
