"""Memory: peak memory of training with each weighting method (relative to EW) and each
architecture (relative to HPS), one fresh process per row.

    python benchmarks/memory.py                                   # CPU: peak RSS (VmHWM)
    python benchmarks/memory.py --device cuda --precision bf16-mixed   # CUDA peak allocation
    python benchmarks/memory.py --methods ew pcgrad --models hps mtan --steps 1 --image-size 32

Each row trains the default CT experiment through the real Trainer for `--steps` optimizer
steps in its own process, so its peak is its own: on CPU the process's peak resident set
(Linux VmHWM: Python, torch, the data and the model), on a GPU
`torch.cuda.max_memory_allocated` (tensors only). Methods run on `model=hps`, architectures
with `weighting=ew`. The last line is `ratio: <the largest ratio in the table>`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import _common
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from mtl.training.builders import build_datamodule, build_module, build_trainer
from mtl.weighting import GradientWeighting

METHODS = [
    *("ew", "uw", "famo", "gradnorm", "db_mtl", "pcgrad", "cagrad", "mgda"),
    *("imtl", "aligned_mtl", "nash_mtl", "upgrad", "graddrop"),
]
MODELS = ["hps", "stl", "mtan", "cross_stitch"]


def compose_row(args, weighting: str, model: str, source: str | None, out: Path):
    overrides = [
        f"weighting={weighting}",
        f"model={model}",
        f"data.batch_size={args.batch_size}",
        *_common.step_only_overrides(args, args.steps),
    ]
    if args.image_size:
        overrides.append(f"data.phantom.image_size={args.image_size}")
    if source is not None:
        overrides.append(f"weighting.grad_source={source}")
    cfg = _common.compose_config([*overrides, *args.override], out)
    # enough slices that every class occurs (class weights need it); max_steps ends the run
    sizes = {"num_train": max(args.batch_size * args.steps, 64), "num_val": 8, "num_test": 8}
    with open_dict(cfg):
        cfg.data.update({key: v for key, v in sizes.items() if key in cfg.data})
    return cfg


def measure_one(args, row: dict) -> float:
    """Peak memory (MiB) of one short training run in this process."""
    cfg = compose_row(args, row["weighting"], row["model"], row["source"], args.out)
    L.seed_everything(0, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    trainer.fit(module, datamodule=datamodule)
    return _common.peak_memory_mib(args.device)


def in_subprocess(args, row: dict) -> float:
    command = [sys.executable, __file__, "--one", json.dumps(row), *args.forward]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{row}: {result.stderr[-2000:]}")
    return float(json.loads(lines[-1])["mib"])


def method_rows(args) -> list[dict]:
    rows = []
    for method in ["ew", *[m for m in args.methods if m != "ew"]]:
        cfg = compose_row(args, method, "hps", None, args.out)
        weighting = instantiate(cfg.weighting)(task_names=list(cfg.tasks))
        sources = [None]
        if isinstance(weighting, GradientWeighting):
            sources = [s for s in ("params", "features") if s in type(weighting).grad_sources]
        rows += [{"weighting": method, "model": "hps", "source": s} for s in sources]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="*", default=METHODS)
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--image-size", type=int, default=128, help="CT phantom size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one row
    _common.add_device_args(parser)
    args = parser.parse_args()
    _common.setup_process(args)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="mtl-memory-"))
    if any(o.startswith(("data=", "experiment=")) for o in args.override):
        args.image_size = 0  # the phantom size belongs to the CT data only
    if args.one:
        print(json.dumps({"mib": measure_one(args, json.loads(args.one))}))
        return
    args.forward = [
        *("--image-size", str(args.image_size), "--batch-size", str(args.batch_size)),
        *("--steps", str(args.steps), "--out", str(args.out), "--device", args.device),
        *(["--precision", args.precision] if args.precision else []),
        *(["--threads", str(args.threads)] if args.threads else []),
        *[f"--override={o}" for o in args.override],
    ]

    kind = "CUDA max allocated" if args.device == "cuda" else "peak RSS (VmHWM)"
    size = f"CT {args.image_size}x{args.image_size}" if args.image_size else "configured data"
    print(
        f"# memory: {_common.describe_device(args.device)}, torch {torch.__version__}, "
        f"{kind}, {size}, batch {args.batch_size}, "
        f"{args.steps} steps, one fresh process per row"
    )
    print("| what | weighting | model | grad source | peak (MiB) | ratio | relative to |")
    print("|---|---|---|---|---:|---:|---|")
    worst = 0.0
    groups = [("method", method_rows(args) if args.methods else [], "ew on hps")]
    models = ["hps", *[m for m in args.models if m != "hps"]] if args.models else []
    groups.append(
        ("architecture", [{"weighting": "ew", "model": m, "source": None} for m in models], "hps")
    )
    for what, rows, base_name in groups:
        base = None
        for row in rows:
            mib = in_subprocess(args, row)
            base = base or mib
            worst = max(worst, mib / base)
            print(
                f"| {what} | {row['weighting']} | {row['model']} | {row['source'] or '-'} | "
                f"{mib:.0f} | {mib / base:.2f} | {base_name} |",
                flush=True,
            )
    print(f"ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
