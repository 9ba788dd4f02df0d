"""Render docs/scenes_samples.png: synthetic scenes beside their labels, depth, normals, boundary.

Why: a quick visual check after changes to `mtl.data.scene_render` that the images look like
photos of rooms (lighting, shadows, textures, perspective) and that the targets line up.
Usage: python experiments/render_scene_samples.py [--seed 0] [--count 6] [--scale 1]
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
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch

from mtl.data.scene_render import SEG_CLASSES, SceneConfig, generate_scene
from mtl.data.targets import semantic_boundaries

# floor, wall, ceiling, then the object classes
PALETTE = ListedColormap(
    [
        (0.55, 0.42, 0.3),
        (0.75, 0.75, 0.7),
        (0.95, 0.95, 0.85),
        (0.9, 0.2, 0.2),
        (0.2, 0.5, 0.9),
        (0.2, 0.75, 0.3),
        (0.95, 0.7, 0.1),
        (0.6, 0.3, 0.75),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--scale", type=int, default=1, help="image size multiple of 96x128")
    parser.add_argument("--out", type=Path, default=Path("docs/scenes_samples.png"))
    args = parser.parse_args()

    config = SceneConfig(image_height=96 * args.scale, image_width=128 * args.scale)
    cols = ("image", "semantic labels", "depth (m)", "normals (camera)", "boundary")
    fig, axes = plt.subplots(
        args.count,
        len(cols),
        figsize=(len(cols) * 2.3, args.count * 1.85),
        dpi=100,
        squeeze=False,
    )
    for row in range(args.count):
        scene = generate_scene(args.seed, row, config)
        boundary = semantic_boundaries(torch.from_numpy(scene.labels.astype(np.int64))[None])
        names = [c for c, on in zip(SEG_CLASSES[3:], scene.objects, strict=True) if on]
        panels = (
            dict(X=scene.image),
            dict(X=scene.labels, cmap=PALETTE, vmin=-0.5, vmax=len(SEG_CLASSES) - 0.5),
            dict(X=scene.depth, cmap="viridis_r", vmin=0.0, vmax=8.0),
            dict(X=np.clip(0.5 * scene.normals + 0.5, 0, 1)),
            dict(X=boundary[0, 0].numpy(), cmap="gray_r", vmin=0, vmax=1),
        )
        for col, kwargs in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(interpolation="nearest", **kwargs)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(cols[col], fontsize=9)
        axes[row, 0].set_ylabel(f"#{row}", fontsize=8)
        axes[row, 1].set_xlabel(", ".join(names) or "(no object)", fontsize=7, labelpad=1)
    handles = [Patch(color=PALETTE(i), label=name) for i, name in enumerate(SEG_CLASSES)]
    fig.legend(
        handles=handles, loc="lower center", ncol=len(SEG_CLASSES), fontsize=7, frameon=False
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
