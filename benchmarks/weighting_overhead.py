"""Step time and peak memory of every MTL weighting method relative to EW, measured side by
side in one run, for k = 2 and 3 tasks and both gradient sources.

    .venv/bin/python benchmarks/weighting_overhead.py              # Markdown table
    .venv/bin/python benchmarks/weighting_overhead.py --methods ew mgda nash_mtl --image-size 128

Targets (issue 3): `features` within 1.3x of EW; `params` within k x of EW. Each
configuration trains the CT experiment through the real Trainer for `--warmup + --steps`
optimizer steps in a fresh process; the step time is the median over the measured steps.
Peak memory: CUDA's peak allocation on a GPU; on CPU the process's peak resident set size
(Linux VmHWM), so it includes the Python process, torch and the data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl.training.builders import build_datamodule, build_module, build_trainer  # noqa: E402
from mtl.weighting import GradientWeighting  # noqa: E402

os.environ.setdefault("WANDB_MODE", "disabled")
METHODS = [
    *("ew", "fixed", "uw", "dwa", "rlw", "gls", "famo", "gradnorm", "db_mtl"),
    *("pcgrad", "gradvac", "cagrad", "mgda", "imtl", "aligned_mtl", "nash_mtl", "upgrad"),
    "graddrop",
]


class StepTimer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.times: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM


def peak_memory_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def compose_run(args, method: str, k: int, source: str | None, out: Path):
    GlobalHydra.instance().clear()
    overrides = [
        f"weighting={method}",
        f"data.num_train={args.batch_size * (args.warmup + args.steps)}",
        "data.num_val=8",
        "data.num_test=8",
        f"data.batch_size={args.batch_size}",
        f"data.phantom.image_size={args.image_size}",
        f"trainer.max_steps={args.warmup + args.steps}",
        "trainer.max_epochs=1",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.enable_checkpointing=false",
        f"trainer.precision={args.precision}",
        "module.diagnostics_every=0",
        "logger=none",
        "callbacks=none",
        "scheduler=none",
        f"paths.output_dir={out}",
        f"paths.data_dir={out / 'data'}",
    ]
    if source is not None:
        overrides.append(f"weighting.grad_source={source}")
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="train", overrides=overrides)
    if k == 3:  # a third task: a second slice-classification head on the same target
        with open_dict(cfg):
            cfg.tasks.aux = cfg.tasks.cls
    return cfg


def measure(args, method: str, k: int, source: str | None, out: Path) -> tuple[float, float]:
    cfg = compose_run(args, method, k, source, out)
    L.seed_everything(0)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    timer = StepTimer(args.warmup)
    trainer = build_trainer(cfg, callbacks=[timer], loggers=[])
    reset_peak_memory()
    trainer.fit(module, datamodule=datamodule)
    return statistics.median(timer.times), peak_memory_mib()


def sources_of(method: str, args) -> list[str | None]:
    from hydra.utils import instantiate

    cfg = compose_run(args, method, 2, None, Path("/tmp/mtl-bench"))
    weighting = instantiate(cfg.weighting)(task_names=["seg", "cls"])
    if not isinstance(weighting, GradientWeighting):
        return [None]
    return [s for s in ("params", "features") if s in type(weighting).grad_sources]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--tasks", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--out", type=Path, default=Path("/tmp/mtl-bench"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one config
    args = parser.parse_args()
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)

    if args.one:
        one = json.loads(args.one)
        step, mem = measure(args, one["method"], one["k"], one["source"], args.out)
        print(json.dumps({"step": step, "mem": mem}))
        return
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(
        f"# weighting overhead: {device}, {torch.get_num_threads()} threads, "
        f"{args.image_size}x{args.image_size}, batch {args.batch_size}, {args.precision}, "
        f"median of {args.steps} steps"
    )
    print("| k | method | grad source | step (ms) | x EW | peak mem (MiB) | x EW | target |")
    print("|---|---|---|---|---|---|---|---|")
    methods = ["ew", *[m for m in args.methods if m != "ew"]]
    for k in args.tasks:
        base_time = base_mem = None
        for method in methods:
            for source in sources_of(method, args):
                step, mem = measure_in_subprocess(args, method, k, source)
                if method == "ew":
                    base_time, base_mem = step, mem
                ratio = step / base_time
                target = {"features": 1.3, "params": float(k)}.get(source or "")
                verdict = ""
                if target is not None:
                    verdict = f"<= {target:g}x {'ok' if ratio <= target else 'MISSED'}"
                print(
                    f"| {k} | {method} | {source or '-'} | {1000 * step:.0f} | {ratio:.2f} | "
                    f"{mem:.0f} | {mem / base_mem:.2f} | {verdict} |",
                    flush=True,
                )


def measure_in_subprocess(args, method: str, k: int, source: str | None) -> tuple[float, float]:
    """A fresh process per configuration: peak memory is then that configuration's own."""
    command = [
        sys.executable,
        __file__,
        "--one",
        json.dumps({"method": method, "k": k, "source": source}),
        *("--image-size", str(args.image_size), "--batch-size", str(args.batch_size)),
        *("--warmup", str(args.warmup), "--steps", str(args.steps)),
        *("--precision", args.precision, "--out", str(args.out)),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{method} k={k} {source}: {result.stderr[-2000:]}")
    measured = json.loads(lines[-1])
    return measured["step"], measured["mem"]


if __name__ == "__main__":
    main()
