"""Architecture x encoder: parameters (shared / total), forward GFLOPs per image and training
step time, measured side by side in one run (the step-time ratio is against HPS on the same
encoder).

    .venv/bin/python benchmarks/architectures.py
    .venv/bin/python benchmarks/architectures.py --encoders unet resnet50 --image-size 128

Each configuration is built from the configs (`model=`, `encoder=`, `decoder=`, tasks seg +
cls on the synthetic CT target specs) and trained for `--warmup + --steps` steps of
forward + backward + AdamW on a fixed random batch; the step time is the median. FLOPs: one
forward pass of one image, 2 FLOPs per multiply-add (torch.utils.flop_counter).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl.models.complexity import model_complexity  # noqa: E402
from mtl.tasks import TargetSpec  # noqa: E402
from mtl.training.builders import build_module  # noqa: E402

MODELS = ["stl", "hps", "mtan", "cross_stitch"]
ENCODERS = ["unet", "resnet18", "resnet50"]


class CTShapes:
    """The synthetic CT data's description, without generating it."""

    in_channels = 1

    def __init__(self, size: int) -> None:
        self.input_shape = (1, size, size)
        self.target_specs = {
            "seg": TargetSpec("segmentation", 5, ("bg", "liver", "kidney", "bone", "lesion"), 255),
            "cls": TargetSpec(
                "classification",
                3,
                ("none", "benign", "malignant"),
                class_frequencies=(0.7, 0.2, 0.1),
            ),
        }


def measure(model: str, encoder: str, args: argparse.Namespace) -> dict[str, float]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(
            "train",
            [f"model={model}", f"encoder={encoder}", f"decoder={args.decoder}", "logger=none"],
        )
    data = CTShapes(args.image_size)
    module = build_module(cfg, data)
    net = module.net.train()
    stats = model_complexity(net, data.input_shape)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(args.batch_size, *data.input_shape, generator=generator)
    targets = {
        "seg": torch.randint(
            0, 5, (args.batch_size, args.image_size, args.image_size), generator=generator
        ),
        "cls": torch.randint(0, 3, (args.batch_size,), generator=generator),
    }
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out = net(image)
        loss = sum(module.tasks[t].loss(out[t], targets[t]) for t in ("seg", "cls"))
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return {
        "shared": stats["model/params/shared"] / 1e6,
        "total": stats["model/params/total"] / 1e6,
        "gflops": stats["model/gflops_per_image"],
        "step": statistics.median(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--encoders", nargs="+", default=ENCODERS)
    parser.add_argument("--decoder", default="unet")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"# tasks seg + cls, decoder={args.decoder}, input 1x{args.image_size}x{args.image_size}, "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| model | encoder | shared (M) | total (M) | GFLOPs/image | s/step | vs hps |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for encoder in args.encoders:
        rows = {model: measure(model, encoder, args) for model in args.models}
        base = rows.get("hps", {}).get("step")
        for model, r in rows.items():
            ratio = f"{r['step'] / base:.2f}x" if base else "-"
            print(
                f"| {model} | {encoder} | {r['shared']:.2f} | {r['total']:.2f} | "
                f"{r['gflops']:.2f} | {r['step']:.3f} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
