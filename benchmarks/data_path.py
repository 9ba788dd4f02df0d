"""Data path: samples/s of each DataModule's training loader (with its configured
`num_workers`) against the rate the default model of that data consumes images on the same
machine. Target: the loader delivers at least 3x what the model consumes.

    python benchmarks/data_path.py                          # ct, scenes, nnunet
    python benchmarks/data_path.py --device cuda --precision bf16-mixed
    python benchmarks/data_path.py --data ct --batches 2 --rounds 1 --image-size 32  # smoke

Data: the synthetic CT default config, the scenes experiment (`experiment=scenes_mtl`), and
nnU-Net cached slices of a raw dataset written by `tests/fixtures/nnunet.py` into a temporary
folder (`--nnunet-cases` volumes of `--nnunet-shape` voxels, seg + a slice `cls` rule).
Loader rate: batches after the first (steady state) of a fresh iterator, samples/s; the time
to the first batch (worker start-up, paid every epoch unless workers persist) is shown
apart. Consumption: forward + backward + optimizer step of the data's default model on one
batch of that loader, under the config's precision and memory format. Loader and model are
timed in alternation, `--rounds` times; medians and spreads are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import _common
import lightning as L
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import open_dict

from mtl.data.base import MultiTaskDataModule
from mtl.module import MultiTaskModule
from mtl.training.builders import build_datamodule, build_module, build_trainer

TARGET = 3.0


def nnunet_overrides(args: argparse.Namespace, out: Path) -> list[str]:
    """A raw nnU-Net dataset in `out`, written once, and the overrides that train on it."""
    sys.path.insert(0, str(_common.ROOT / "tests"))
    from fixtures.nnunet import make_nnunet_dataset

    folder = out / "raw" / "Dataset001_Phantom"
    if not (folder / "dataset.json").exists():
        make_nnunet_dataset(
            out / "raw", n_cases=args.nnunet_cases, shape=tuple(args.nnunet_shape), n_test=2
        )
    return [
        "data=nnunet",
        f"data.root={folder}",
        "data.cls_rule={kind: has_label, label: lesion}",
        "tasks=[seg,cls]",
    ]


def data_overrides(name: str, args: argparse.Namespace, out: Path) -> list[str]:
    sizes = [f"data.num_train={args.num_train}", "data.num_val=8", "data.num_test=8"]
    if name == "ct":
        size = [f"data.phantom.image_size={args.image_size}"] if args.image_size else []
        return [*sizes, *size]
    if name == "scenes":
        size = []
        if args.image_size:
            size = [f"data.scene.image_height={args.image_size}"]
            size += [f"data.scene.image_width={args.image_size * 4 // 3}"]
        return ["experiment=scenes_mtl", *sizes, *size]
    if name == "nnunet":
        return nnunet_overrides(args, out)
    raise ValueError(f"unknown data {name!r}")


def loader_rate(datamodule: MultiTaskDataModule, batches: int) -> tuple[float, float]:
    """(samples/s after the first batch, seconds to the first batch) of a fresh iterator."""
    start = time.perf_counter()
    iterator: Iterator = iter(datamodule.train_dataloader())
    first = next(iterator)
    ready = time.perf_counter()
    samples = 0
    for _ in range(batches):
        try:
            samples += len(next(iterator)["image"])
        except StopIteration:
            break
    seconds = time.perf_counter() - ready
    del iterator, first
    if samples == 0:
        raise RuntimeError("the training split holds fewer than 2 batches; raise its size")
    return samples / seconds, ready - start


def consumption_rate(
    module: MultiTaskModule, batch: dict, precision: str, device: torch.device, steps: int
) -> float:
    """Images/s of forward + backward + optimizer step on `batch`."""
    net = module.net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    autocast = nullcontext()
    if precision.startswith(("bf16", "16")):
        dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
        autocast = torch.autocast(device.type, dtype=dtype)
    image = batch["image"].contiguous(memory_format=module.memory_format)
    targets = batch["targets"]
    _common.sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            outputs = net(image)
            loss = sum(t.loss(outputs[n], targets[t.target]) for n, t in module.tasks.items())
        loss.backward()
        optimizer.step()
    _common.sync(device)
    return steps * image.shape[0] / (time.perf_counter() - start)


def measure(name: str, args: argparse.Namespace, out: Path) -> dict[str, object]:
    overrides = [*data_overrides(name, args, out), *_common.device_overrides(args)]
    overrides += ["logger=none", "callbacks=none", *args.override]
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    cfg = _common.compose_config(overrides, out / name)
    if args.num_workers is not None:
        with open_dict(cfg):
            cfg.data.num_workers = args.num_workers
    L.seed_everything(0, workers=True)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    module = build_module(cfg, datamodule)
    # the loader is built as in training: attached to a Trainer on the chosen device
    datamodule.trainer = build_trainer(cfg, callbacks=[], loggers=[])
    device = torch.device(args.device)
    module.to(device)
    batch = move_data_to_device(next(iter(datamodule.train_dataloader())), device)
    precision = str(cfg.trainer.precision)
    consumption_rate(module, batch, precision, device, 1)  # warm-up
    loads, starts, eats = [], [], []
    for _ in range(args.rounds):
        rate, startup = loader_rate(datamodule, args.batches)
        loads.append(rate)
        starts.append(startup)
        eats.append(consumption_rate(module, batch, precision, device, args.steps))
    return {
        "data": name,
        "workers": datamodule.num_workers,
        "pin": bool(datamodule.train_dataloader().pin_memory),
        "batch": int(cfg.data.batch_size),
        "input": "x".join(map(str, datamodule.input_shape)),
        "model": f"{type(module.net).__name__}, {'+'.join(module.tasks)}",
        "loads": loads,
        "starts": starts,
        "eats": eats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["ct", "scenes", "nnunet"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="timed loader batches")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    parser.add_argument("--num-train", type=int, default=512, help="synthetic training split")
    parser.add_argument("--image-size", type=int, default=None, help="synthetic image size")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--num-workers", type=int, default=None, help="default: the config's")
    parser.add_argument("--nnunet-cases", type=int, default=8)
    parser.add_argument("--nnunet-shape", type=int, nargs=3, default=[192, 192, 40])
    parser.add_argument("--out", type=Path, default=None)
    _common.add_device_args(parser)
    args = parser.parse_args()
    _common.setup_process(args)
    out = args.out or Path(tempfile.mkdtemp(prefix="mtl-data-path-"))

    rows = [measure(name, args, out) for name in args.data]
    print(
        f"# data path: {_common.describe_device(args.device)}, torch {torch.__version__}, "
        f"{args.rounds} rounds (loader: {args.batches} batches after the first; model: "
        f"{args.steps} steps), medians with min-max"
    )
    print(
        "| data | workers | pin | batch | input | model | loader samples/s | first batch (s) "
        "| model images/s | loader / model | target |"
    )
    print("|---|---:|---|---:|---|---|---:|---:|---:|---:|---|")
    ratios = []
    for r in rows:
        loads, eats = r["loads"], r["eats"]
        ratio = statistics.median(loads) / statistics.median(eats)
        ratios.append(ratio)
        ok = "ok" if ratio >= TARGET else "MISSED"
        print(
            f"| {r['data']} | {r['workers']} | {r['pin']} | {r['batch']} | {r['input']} | "
            f"{r['model']} | {statistics.median(loads):.0f} ({min(loads):.0f}-{max(loads):.0f}) "
            f"| {statistics.median(r['starts']):.2f} | {statistics.median(eats):.1f} "
            f"({min(eats):.1f}-{max(eats):.1f}) | {ratio:.1f} | >= {TARGET:g} {ok} |"
        )
    print(f"ratio: {min(ratios):.3f}")  # the worst loader / model ratio


if __name__ == "__main__":
    main()
