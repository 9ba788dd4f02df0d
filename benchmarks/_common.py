"""What every benchmark shares: config composition, device and precision options, timing
statistics and peak memory. Benchmarks print ratios measured side by side in one run, so
a noisy machine shifts both sides of a ratio alike."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("WANDB_MODE", "disabled")


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """`--device`, `--precision`, `--threads`, `--override`: the same flags in every script,
    so a CPU command runs unchanged on a GPU with `--device cuda`."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--precision",
        default=None,
        help="trainer.precision; default: the config's (auto: bf16-mixed where bf16 is native, "
        "else 32-true)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override (repeatable), e.g. --override encoder=resnet50",
    )


def add_clock_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall: elapsed time; cpu: this process's CPU time, for single-threaded CPU runs "
        "(--threads 1, no loader workers) on a shared machine, where other jobs' load "
        "stretches wall time",
    )


_clock = time.perf_counter


def now() -> float:
    """Seconds on the clock chosen with `--clock`."""
    return _clock()


def setup_process(args: argparse.Namespace) -> None:
    """Threads, clock, quiet Lightning, and a clear error when CUDA is asked for and absent."""
    global _clock
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    if getattr(args, "clock", "wall") == "cpu":
        if args.device == "cuda":
            raise SystemExit("--clock cpu measures CPU work only; use --clock wall on a GPU")
        _clock = time.process_time
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("lightning.pytorch", "lightning.fabric", "mtl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")


def device_overrides(args: argparse.Namespace) -> list[str]:
    """Trainer overrides for `--device` / `--precision`."""
    out = [f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}"]
    if args.precision:
        out.append(f"trainer.precision={args.precision}")
    return out


def step_only_overrides(args: argparse.Namespace, max_steps: int) -> list[str]:
    """A run that does nothing but `max_steps` training steps: no validation, logging,
    checkpoints, callbacks, scheduler or diagnostics, so only the step is measured."""
    return [
        "trainer.max_epochs=-1",
        f"trainer.max_steps={max_steps}",
        "trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.enable_checkpointing=false",
        "module.diagnostics_every=0",
        "logger=none",
        "callbacks=none",
        "scheduler=none",
        *device_overrides(args),
    ]


def compose_config(overrides: Sequence[str], out: Path) -> DictConfig:
    """`conf/train.yaml` with `overrides`; outputs and data caches under `out`."""
    from mtl.training.precision import resolve_trainer_precision  # after ROOT is on sys.path

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose(config_name="train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(out / "run")
        cfg.paths.log_dir = str(out / "logs")
        cfg.paths.data_dir = str(out / "data")
        cfg.extras.print_config = False
        cfg.extras.print_metrics = False
    resolve_trainer_precision(cfg)  # `auto`: the plain loops autocast as the Trainer does
    return cfg


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a wall-clock time covers it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def describe_device(device: str) -> str:
    clock = "CPU-time clock" if _clock is time.process_time else "wall clock"
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, {clock}"
    return f"CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores), {clock}"


def median_spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def spread_pct(values: Sequence[float]) -> str:
    """`±x%`: half the min-max range relative to the median, for the tables' spread column."""
    med, lo, hi = median_spread(values)
    return f"±{50 * (hi - lo) / med:.0f}%" if med else "-"


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)


def peak_memory_mib(device: str) -> float:
    """CUDA's peak allocation on a GPU; the process's peak resident set (VmHWM) on CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")
