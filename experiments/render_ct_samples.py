"""Render docs/ct_samples.png: synthetic CT slices (W400/L40) beside their mask overlays.

Why: a quick visual check that `mtl.data.ct_phantom` looks like abdominal CT (body outline,
fat layer, spine, liver on image left, kidneys, lung bases, lesions) after changes.
Usage: python experiments/render_ct_samples.py [--seed 0] [--out docs/ct_samples.png]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from mtl.data.ct_phantom import CLS_CLASSES, SEG_CLASSES, generate_slice

# background transparent; liver, kidney, bone, lesion
OVERLAY = ListedColormap(
    [(0, 0, 0, 0), (0.9, 0.55, 0.1, 0.45), (0.2, 0.6, 1.0, 0.5), (1, 1, 1, 0.45), (1, 0, 0.2, 0.8)]
)


def pick_indices(seed: int, count: int) -> list[int]:
    """One index per level band, cycling the wanted class, so the grid shows variety."""
    picked: list[int] = []
    cycle = (2, 0, 1, 1, 2, 0, 1, 2)
    for k, lo in enumerate(np.linspace(0.0, 1.0, count, endpoint=False)):
        hi, want = lo + 1.0 / count, cycle[k % len(cycle)]
        fallback = None
        for i in range(3000):
            ct = generate_slice(seed, i)
            if i in picked or not lo <= ct.level < hi:
                continue
            fallback = i if fallback is None else fallback
            # lesion slices: show one whose lesions stand out from the noise (|contrast| >= 30)
            visible = all(abs(le.contrast) >= 30 for le in ct.lesions)
            if ct.label == want and visible:
                picked.append(i)
                break
        else:
            if fallback is not None:
                picked.append(fallback)
    return picked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("docs/ct_samples.png"))
    args = parser.parse_args()

    indices = pick_indices(args.seed, args.count)
    cols = 4  # two slices per row: image, overlay, image, overlay
    rows = (len(indices) + 1) // 2
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.75), dpi=90, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, index in enumerate(indices):
        ct = generate_slice(args.seed, index)
        ax_img, ax_mask = axes[k // 2, 2 * (k % 2)], axes[k // 2, 2 * (k % 2) + 1]
        ax_img.imshow(ct.image, cmap="gray", vmin=40 - 200, vmax=40 + 200)
        ax_mask.imshow(ct.image, cmap="gray", vmin=40 - 200, vmax=40 + 200)
        ax_mask.imshow(
            ct.mask, cmap=OVERLAY, vmin=-0.5, vmax=len(SEG_CLASSES) - 0.5, interpolation="nearest"
        )
        phase = "PV" if ct.enhanced else "NC"
        ax_img.set_title(f"#{index} {CLS_CLASSES[ct.label]}", fontsize=8)
        ax_mask.set_title(f"z={ct.level:.2f} {phase} σ={ct.noise_sigma:.0f} HU", fontsize=8)
    fig.suptitle("Synthetic CT (W400/L40); overlay: liver, kidney, bone, lesion", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB), indices {indices}")


if __name__ == "__main__":
    main()
