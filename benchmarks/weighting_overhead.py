"""Method cost: step time (and images/s) of every MTL weighting method relative to EW,
measured side by side in one process, rounds interleaved, for k = 2 and 3 tasks and both
gradient sources.

    python benchmarks/weighting_overhead.py                    # CT experiment, Markdown table
    python benchmarks/weighting_overhead.py --methods ew mgda nash_mtl --image-size 128
    python benchmarks/weighting_overhead.py --device cuda --tasks 0 \\
        --override experiment=scenes_mtl --override 'tasks=[seg,depth,normals]' ...

Targets (issue 3): `features` within 1.3x of EW; `params` within k x of EW. Every
configuration trains through the real Trainer (our module, manual optimisation) for
`--warmup + --steps` optimizer steps from the same seed, once per round; the order of the
configurations alternates between rounds. A row's ratio is the median over rounds of its
step time divided by EW's in the same round. `--tasks 2` is the configured pair (seg, cls);
`3` adds a second classification head on the same target; `0` keeps the configured tasks as
they are (e.g. three dense tasks on scenes). A step is timed as in `overhead.py` (the whole
window of steps: data, hooks, logging), so the `plain` row, the hand-written PyTorch loop of
`overhead.py` on the same data and network, gives each method's cost against a loop with no
framework at all (`x plain`). Peak memory per method: `benchmarks/memory.py`. The last line
is `ratio: <the largest x EW of a gradient method>`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from pathlib import Path

import _common
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from overhead import WindowTimer, plain

from mtl.data.base import MultiTaskDataModule
from mtl.training.builders import build_datamodule, build_module, build_trainer
from mtl.weighting import GradientWeighting

METHODS = [
    *("ew", "fixed", "uw", "dwa", "rlw", "gls", "famo", "gradnorm", "db_mtl"),
    *("pcgrad", "gradvac", "cagrad", "mgda", "imtl", "aligned_mtl", "nash_mtl", "upgrad"),
    "graddrop",
]


def compose_run(args, method: str, k: int, source: str | None, out: Path) -> DictConfig:
    overrides = [
        f"weighting={method}",
        *_common.step_only_overrides(args, args.warmup + args.steps),
    ]
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    if args.image_size:
        overrides.append(f"data.phantom.image_size={args.image_size}")
    if source is not None:
        overrides.append(f"weighting.grad_source={source}")
    cfg = _common.compose_config([*overrides, *args.override], out)
    with open_dict(cfg):
        batches = int(cfg.data.batch_size) * (args.warmup + args.steps)
        sizes = {"num_train": max(batches, 64), "num_val": 8, "num_test": 8}
        cfg.data.update({key: v for key, v in sizes.items() if key in cfg.data})
        if k == 3:  # a third task: a second slice-classification head on the same target
            cfg.tasks.aux = cfg.tasks.cls
    return cfg


def sources_of(method: str, args, out: Path) -> list[str | None]:
    cfg = compose_run(args, method, 2, None, out)
    weighting = instantiate(cfg.weighting)(task_names=list(cfg.tasks))
    if not isinstance(weighting, GradientWeighting):
        return [None]
    return [s for s in ("params", "features") if s in type(weighting).grad_sources]


def step_time(cfg: DictConfig, datamodule: MultiTaskDataModule, args, method: str) -> float:
    """Seconds per optimizer step over the timed window of one short run from a fixed seed;
    `method="plain"`: the hand-written loop on the same (EW) network instead."""
    L.seed_everything(0, workers=True)
    module = build_module(cfg, datamodule)
    if method == "plain":
        return plain(cfg, datamodule, copy.deepcopy(module.net).to(args.device), module, args)
    timer = WindowTimer(args.warmup, args.steps, args.device)
    trainer = build_trainer(cfg, callbacks=[timer], loggers=[])
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--tasks", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--image-size", type=int, default=64, help="CT phantom size")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--plain", action="store_true", help="also time the plain PyTorch loop (x plain column)"
    )
    parser.add_argument("--out", type=Path, default=None)
    _common.add_device_args(parser)
    _common.add_clock_arg(parser)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the timed window starts after a warm-up step)")
    _common.setup_process(args)
    if any(o.startswith(("data=", "experiment=")) for o in args.override):
        args.image_size = None  # the phantom size belongs to the CT data only
    out = args.out or Path(tempfile.mkdtemp(prefix="mtl-weighting-"))

    methods = ["ew", *[m for m in args.methods if m not in ("ew", "plain")]]
    configs = [(m, s) for m in methods for s in sources_of(m, args, out)]
    if args.plain:
        configs.append(("plain", None))
    rows = []
    for k in args.tasks:
        cfgs = {c: compose_run(args, c[0].replace("plain", "ew"), k, c[1], out) for c in configs}
        datamodule = build_datamodule(cfgs[configs[0]])
        times: dict[tuple, list[float]] = {c: [] for c in configs}
        for round_ in range(args.rounds):
            for c in configs if round_ % 2 == 0 else configs[::-1]:
                times[c].append(step_time(cfgs[c], datamodule, args, c[0]))
        shape = "x".join(map(str, datamodule.input_shape))
        base = times[configs[0]]
        batch = int(cfgs[configs[0]].data.batch_size)
        tasks = len(cfgs[configs[0]].tasks)
        plains = times.get(("plain", None))
        for (method, source), values in times.items():
            per_round = [t / b for t, b in zip(values, base, strict=True)]
            x_plain = None
            if plains:
                x_plain = statistics.median(t / p for t, p in zip(values, plains, strict=True))
            rows.append((tasks, method, source, values, per_round, batch, x_plain))
        precision = cfgs[configs[0]].trainer.precision

    print(
        f"# weighting overhead: {_common.describe_device(args.device)}, torch "
        f"{torch.__version__}, {precision}, input {shape}, batch {rows[0][5]}, "
        f"{args.rounds} rounds x {args.steps} steps (after {args.warmup}), configurations "
        f"interleaved; x EW (x plain) = median over rounds of (step / EW's (plain loop's) "
        f"step in that round)"
    )
    print(
        "| k | method | grad source | step (ms) | images/s | x EW | x EW min-max | x plain "
        "| target |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    worst = 0.0
    for k, method, source, values, per_round, batch, x_plain in rows:
        step = statistics.median(values)
        ratio = statistics.median(per_round)
        target = {"features": 1.3, "params": float(k)}.get(source or "")
        verdict = ""
        if target is not None:
            worst = max(worst, ratio)
            verdict = f"<= {target:g}x {'ok' if ratio <= target else 'MISSED'}"
        print(
            f"| {k} | {method} | {source or '-'} | {1000 * step:.0f} | {batch / step:.1f} | "
            f"{ratio:.2f} | {min(per_round):.2f}-{max(per_round):.2f} | "
            f"{'-' if x_plain is None else f'{x_plain:.2f}'} | {verdict} |",
            flush=True,
        )
    print(f"ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
