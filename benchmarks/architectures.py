"""Architecture x encoder: parameters (shared / total), forward GFLOPs per image and training
step time, measured side by side in one run (the step-time ratio is against HPS on the same
encoder).

    .venv/bin/python benchmarks/architectures.py
    .venv/bin/python benchmarks/architectures.py --encoders unet resnet50 --image-size 128
    .venv/bin/python benchmarks/architectures.py --device cuda --precision bf16-mixed

Each configuration is built from the configs (`model=`, `encoder=`, `decoder=`, tasks seg +
cls on the synthetic CT target specs) and trained for `--warmup + --steps` steps of
forward + backward + AdamW on a fixed random batch, the models' steps interleaved; the step
time is the median. FLOPs: one forward pass of one image, 2 FLOPs per multiply-add
(torch.utils.flop_counter). The last line is `ratio: <the largest s/step vs HPS>`.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import nullcontext
from pathlib import Path

import _common
import numpy as np
import torch

from mtl.models.complexity import model_complexity
from mtl.tasks import TargetSpec
from mtl.training.builders import build_module

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

    def class_frequencies(self, target: str) -> np.ndarray:
        """The phantom's prior: the class shares a generated training split holds."""
        return np.asarray(self.target_specs[target].class_frequencies)


def autocast_for(precision: str | None, device: torch.device):
    if precision and precision.startswith(("bf16", "16")):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        return torch.autocast(device.type, dtype=dtype)
    return nullcontext()


class Candidate:
    """One architecture built from the configs, with a fixed random batch and AdamW."""

    def __init__(self, model: str, encoder: str, args: argparse.Namespace) -> None:
        overrides = [f"model={model}", f"encoder={encoder}", f"decoder={args.decoder}"]
        cfg = _common.compose_config([*overrides, "logger=none", *args.override], args.out)
        data = CTShapes(args.image_size)
        self.module = build_module(cfg, data)
        self.net = self.module.net.train()
        self.stats = model_complexity(self.net, data.input_shape)
        self.device = torch.device(args.device)
        self.precision = args.precision
        self.net.to(self.device)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=1e-4)
        generator = torch.Generator().manual_seed(0)
        size, n = args.image_size, args.batch_size
        image = torch.randn(n, *data.input_shape, generator=generator)
        self.image = image.to(self.device).contiguous(memory_format=self.module.memory_format)
        self.targets = {
            "seg": torch.randint(0, 5, (n, size, size), generator=generator).to(self.device),
            "cls": torch.randint(0, 3, (n,), generator=generator).to(self.device),
        }

    def step(self) -> float:
        """Seconds of one forward + backward + AdamW step."""
        _common.sync(self.device)
        start = _common.now()
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_for(self.precision, self.device):
            out = self.net(self.image)
            loss = sum(self.module.tasks[t].loss(out[t], self.targets[t]) for t in self.targets)
        loss.backward()
        self.optimizer.step()
        _common.sync(self.device)
        return _common.now() - start


def measure(encoder: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Every model on `encoder`, their steps interleaved (order reversed every other round)."""
    built = {model: Candidate(model, encoder, args) for model in args.models}
    times: dict[str, list[float]] = {model: [] for model in args.models}
    for step in range(args.warmup + args.steps):
        order = args.models if step % 2 == 0 else args.models[::-1]
        for model in order:
            seconds = built[model].step()
            if step >= args.warmup:
                times[model].append(seconds)
    rows = {}
    for model, candidate in built.items():
        stats = candidate.stats
        rows[model] = {
            "shared": stats["model/params/shared"] / 1e6,
            "total": stats["model/params/total"] / 1e6,
            "gflops": stats["model/gflops_per_image"],
            "step": statistics.median(times[model]),
            "spread": _common.spread_pct(times[model]),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--encoders", nargs="+", default=ENCODERS)
    parser.add_argument("--decoder", default="unet")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/mtl-architectures"))
    _common.add_device_args(parser)
    _common.add_clock_arg(parser)
    args = parser.parse_args()
    _common.setup_process(args)
    torch.manual_seed(0)
    print(
        f"# tasks seg + cls, decoder={args.decoder}, input 1x{args.image_size}x{args.image_size}, "
        f"batch {args.batch_size}, {_common.describe_device(args.device)}, "
        f"{args.precision or '32-true'}, torch {torch.__version__}"
    )
    print(f"# median of {args.steps} steps after {args.warmup}, models interleaved step by step")
    print("| model | encoder | shared (M) | total (M) | GFLOPs/image | s/step | spread | vs hps |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    worst = 1.0
    for encoder in args.encoders:
        rows = measure(encoder, args)
        base = rows.get("hps", {}).get("step")
        for model, r in rows.items():
            ratio = f"{r['step'] / base:.2f}x" if base else "-"
            worst = max(worst, r["step"] / base if base else 1.0)
            print(
                f"| {model} | {encoder} | {r['shared']:.2f} | {r['total']:.2f} | "
                f"{r['gflops']:.2f} | {r['step']:.3f} | {r['spread']} | {ratio} |",
                flush=True,
            )
    print(f"ratio: {worst:.3f}")  # the slowest architecture's step time over HPS's


if __name__ == "__main__":
    main()
