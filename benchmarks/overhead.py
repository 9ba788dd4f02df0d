"""Framework overhead: our training step (what `train.py` builds: config, datamodule, module,
callbacks, CSV logger, Lightning Trainer) against a plain PyTorch loop written below with the
same network weights, data loader, batch, augmentation, optimizer, LR schedule, autocast and
task losses. Time per optimizer step, measured side by side with interleaved rounds.

    python benchmarks/overhead.py                        # default CT experiment, EW, HPS
    python benchmarks/overhead.py --device cuda          # the same on a GPU
    python benchmarks/overhead.py --steps 2 --rounds 1 --image-size 32   # smoke run

Each round runs every path for `--warmup + --steps` optimizer steps and times the last
`--steps` (data loading and host-to-device copies included; epoch-end work such as
validation and checkpoints is not per-step and is left out). The order alternates from
round to round; per-round ratios to the plain loop are reported as median and spread.
The reliability checks in our step (finite losses, finite gradients, a copy of BatchNorm
statistics) and the gradient diagnostics are micro-timed separately and shown as a share of
the plain step. The last line is `ratio: <our s/step / plain s/step>`: the median over
rounds for train.py as shipped, plus the amortised share of the gradient diagnostics step.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import _common
import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import open_dict

from mtl.data.resumable import reseed_for_batch
from mtl.module import MultiTaskModule
from mtl.training.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    build_trainer,
)
from mtl.training.nonfinite import grads_finite, nonfinite_tasks
from mtl.training.task_gradients import per_task_gradients


class WindowTimer(L.Callback):
    """Wall time of the training batches `[warmup, warmup + steps)` (all hooks included)."""

    def __init__(self, warmup: int, steps: int, device: str) -> None:
        self.first, self.last, self.device = warmup - 1, warmup + steps - 1, device
        self.start = self.seconds = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx in (self.first, self.last):
            _common.sync(self.device)
            now = _common.now()
            if batch_idx == self.first:
                self.start = now
            else:
                self.seconds = now - self.start


class Profile(L.Callback):
    """torch.profiler over the training batches `[warmup, warmup + steps)`."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.first, self.last = warmup, warmup + steps - 1
        self.profiler = torch.profiler.profile()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.first:
            self.profiler.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.last:
            self.profiler.__exit__(None, None, None)


def profile_table(cfg, datamodule, module: MultiTaskModule, args) -> str:
    """Operators of `--profile` of our training steps, by self time."""
    module.weighting.num_steps.fill_(1)
    profile = Profile(args.warmup, min(args.profile, args.steps))
    trainer = build_trainer(cfg, [*build_callbacks(cfg), profile], build_loggers(cfg))
    trainer.fit(module, datamodule=datamodule)
    sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    return profile.profiler.key_averages().table(sort_by=sort, row_limit=args.profile_rows)


def without_step_logging(module: MultiTaskModule) -> Callable[[], None]:
    """Silence the module's per-step `self.log` calls; returns the undo."""
    original = module._log_losses

    def log_losses(stage: str, *args: Any) -> None:
        if stage != "train":
            original(stage, *args)

    module._log_losses = log_losses  # type: ignore[method-assign]
    module._log_step = lambda batch_size: None  # type: ignore[method-assign]
    return lambda: [module.__dict__.pop(k, None) for k in ("_log_losses", "_log_step")]


def ours(cfg, datamodule, module: MultiTaskModule, args, variant: str) -> float:
    """s/step of our path: a fresh Trainer with the run's callbacks and loggers, as train.py."""
    undo = without_step_logging(module) if variant == "no_step_logging" else (lambda: None)
    # gradient diagnostics (every `diagnostics_every` steps) are costed apart, amortised:
    # keep their step out of the short timed window
    module.weighting.num_steps.fill_(1)
    timer = WindowTimer(args.warmup, args.steps, args.device)
    trainer = build_trainer(cfg, [*build_callbacks(cfg), timer], build_loggers(cfg))
    try:
        trainer.fit(module, datamodule=datamodule)
    finally:
        undo()
    return timer.seconds / args.steps


def autocast_for(precision: str, device: torch.device):
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def plain(cfg, datamodule, net: torch.nn.Module, module: MultiTaskModule, args) -> float:
    """s/step of a hand-written loop: same loader, augmentation, net copy, losses, optimizer
    and schedule; nothing else."""
    device = torch.device(args.device)
    precision = str(cfg.trainer.precision)
    tasks = module.tasks
    optimizer = instantiate(cfg.optimizer, _convert_="all")(params=net.parameters())
    total = args.warmup + args.steps
    schedule = module.schedule.build(optimizer, total) if module.schedule else None
    scheduler = schedule["scheduler"] if schedule else None
    scaler = torch.amp.GradScaler(device.type) if precision.startswith("16") else None
    kinds = {name: spec.kind for name, spec in datamodule.target_specs.items()}
    memory_format = module.memory_format
    net.train()
    start = 0.0
    for step, batch in enumerate(datamodule.train_dataloader()):
        batch = move_data_to_device(batch, device)
        if datamodule.augment is not None:
            batch = datamodule.augment(batch, kinds)
        image = batch["image"].contiguous(memory_format=memory_format)
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(precision, device):
            outputs = net(image)
            loss = sum(t.loss(outputs[n], batch["targets"][t.target]) for n, t in tasks.items())
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None and schedule["interval"] == "step":
            scheduler.step()
        if step == args.warmup - 1:
            _common.sync(device)
            start = _common.now()
        if step == total - 1:
            _common.sync(device)
            return (_common.now() - start) / args.steps
    raise RuntimeError("the loader ran out before warmup + steps batches; raise data.num_train")


def micro_ms(fn: Callable[[], Any], device: str, repeats: int) -> float:
    """Median wall time of `fn` in ms."""
    times = []
    for _ in range(repeats):
        _common.sync(device)
        start = _common.now()
        fn()
        _common.sync(device)
        times.append(1000 * (_common.now() - start))
    return statistics.median(times)


def component_costs(cfg, datamodule, module: MultiTaskModule, args) -> dict[str, float]:
    """ms per optimizer step of the work our step adds to the plain loop's."""
    device = torch.device(args.device)
    module.to(device).train()
    batch = move_data_to_device(next(iter(datamodule.train_dataloader())), device)
    image = batch["image"].contiguous(memory_format=module.memory_format)
    with autocast_for(str(cfg.trainer.precision), device):
        losses = module.task_loss_list(module.net(image), batch)
    torch.stack(losses).sum().backward(retain_graph=True)
    names = list(module.tasks)
    shared = module._shared_params()
    every = module.diagnostics_every
    reps = args.micro_repeats
    costs = {
        "finite losses (one host sync)": micro_ms(
            lambda: nonfinite_tasks(names, torch.stack(losses).detach()), args.device, reps
        ),
        "finite gradients (one fused pass)": micro_ms(
            lambda: grads_finite(module.parameters()), args.device, reps
        ),
        "BatchNorm statistics copy": micro_ms(
            lambda: [b.clone() for b in module._norm_buffers()], args.device, reps
        ),
        "per-batch reseed (exact resume)": micro_ms(
            lambda: reseed_for_batch(42, 7), args.device, reps
        ),
    }
    if every > 0:
        per_diag = micro_ms(
            lambda: per_task_gradients(losses, shared), args.device, max(3, reps // 5)
        )
        costs[f"gradient diagnostics (1 step in {every}, amortised)"] = per_diag / every
    module.zero_grad(set_to_none=True)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--image-size", type=int, default=None, help="CT phantom size")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["shipped", "no_step_logging"],
        choices=["shipped", "no_step_logging"],
    )
    parser.add_argument("--micro-repeats", type=int, default=20)
    parser.add_argument(
        "--profile", type=int, default=0, help="also print a torch.profiler table of N steps"
    )
    parser.add_argument("--profile-rows", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    _common.add_device_args(parser)
    _common.add_clock_arg(parser)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be >= 1 (the timed window starts after a warm-up step)")
    _common.setup_process(args)
    out = args.out or Path(tempfile.mkdtemp(prefix="mtl-overhead-"))

    total = args.warmup + args.steps
    overrides = [
        "logger=[csv]",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.limit_val_batches=0",
        "trainer.max_epochs=1",
        f"trainer.max_steps={total}",
        "data.num_val=8",
        "data.num_test=8",
        *_common.device_overrides(args),
    ]
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    if args.image_size:
        overrides.append(f"data.phantom.image_size={args.image_size}")
    overrides += args.override
    cfg = _common.compose_config(overrides, out)
    batch_size = int(cfg.data.batch_size)
    with open_dict(cfg):  # synthetic data: one epoch holds warmup + steps batches
        sizes = {"num_train": max(batch_size * total, 64), "num_val": 8, "num_test": 8}
        cfg.data.update({k: v for k, v in sizes.items() if k in cfg.data})
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    net = copy.deepcopy(module.net).to(args.device)

    times: dict[str, list[float]] = {"plain": [], **{v: [] for v in args.variants}}
    order = ["plain", *args.variants]
    for round_ in range(args.rounds):
        for path in order if round_ % 2 == 0 else order[::-1]:
            if path == "plain":
                times[path].append(plain(cfg, datamodule, net, module, args))
            else:
                times[path].append(ours(cfg, datamodule, module, args, path))
    table = profile_table(cfg, datamodule, module, args) if args.profile else ""
    costs = component_costs(cfg, datamodule, module, args)

    encoder = getattr(module.net, "encoder", None)
    model = type(module.net).__name__ + (f"/{type(encoder).__name__}" if encoder else "")
    print(
        f"# framework overhead: {_common.describe_device(args.device)}, torch "
        f"{torch.__version__}, data={cfg.data._target_.rsplit('.', 1)[-1]}, model {model}, "
        f"tasks {'+'.join(module.tasks)}, weighting {type(module.weighting).__name__}, "
        f"batch {batch_size}, input {'x'.join(map(str, datamodule.input_shape))}, "
        f"{cfg.trainer.precision}, optimizer {cfg.optimizer._target_.rsplit('.', 1)[-1]}"
        f"{' (fused)' if cfg.optimizer.get('fused') else ''}"
    )
    print(
        f"# {args.rounds} rounds x {args.steps} timed steps (after {args.warmup} warm-up), "
        "order alternating; ratio = median of per-round ratios to the plain loop"
    )
    print("| path | s/step (median) | min-max | x plain (median) | ratio spread | target |")
    print("|---|---:|---:|---:|---:|---|")
    labels = {
        "plain": "plain PyTorch loop",
        "shipped": "train.py as shipped",
        "no_step_logging": "train.py minus per-step logging",
    }
    ratios: dict[str, list[float]] = {}
    for path in order:
        med, lo, hi = _common.median_spread(times[path])
        per_round = [a / b for a, b in zip(times[path], times["plain"], strict=True)]
        ratios[path] = per_round
        ratio = statistics.median(per_round)
        verdict = "" if path == "plain" else f"<= 1.05 {'ok' if ratio <= 1.05 else 'MISSED'}"
        print(
            f"| {labels[path]} | {med:.4f} | {lo:.4f}-{hi:.4f} | {ratio:.3f} | "
            f"{min(per_round):.3f}-{max(per_round):.3f} | {verdict} |"
        )
    plain_ms = 1000 * statistics.median(times["plain"])
    diagnostics = sum(ms for name, ms in costs.items() if name.startswith("gradient diag"))
    main_path = "shipped" if "shipped" in ratios else args.variants[0]
    # the timed windows skip the diagnostics step (1 in `diagnostics_every`): add its share
    shipped = statistics.median(ratios[main_path]) + diagnostics / plain_ms
    verdict = f"<= 1.05 {'ok' if shipped <= 1.05 else 'MISSED'}"
    print(f"| {labels[main_path]}, diagnostics amortised | | | {shipped:.3f} | | {verdict} |")
    print()
    print(f"# per-step work our step adds (median of {args.micro_repeats} calls each)")
    print("| component | ms/step | % of plain step |")
    print("|---|---:|---:|")
    for name, ms in costs.items():
        print(f"| {name} | {ms:.2f} | {100 * ms / plain_ms:.2f}% |")
    if table:
        print(f"\n# torch.profiler: {min(args.profile, args.steps)} of our steps\n{table}")
    print(f"ratio: {shipped:.3f}")


if __name__ == "__main__":
    main()
