"""Turn a composed Hydra config into objects, checking early that the pieces fit together.

Shared by `train.py`, `eval.py` and the tests, so every entry point validates the same way.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.plugins import CheckpointIO
from omegaconf import DictConfig, OmegaConf

from mtl.data.base import MultiTaskDataModule
from mtl.data.sample_metadata import MetadataError
from mtl.data.samplers import SamplerConfigError, Sampling
from mtl.module import MultiTaskModule
from mtl.tasks import TargetSpec, Task, TaskConfigError
from mtl.training.checkpoint_io import AtomicCheckpointIO
from mtl.training.precision import resolve_precision

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The composed config is inconsistent; the message names both sides and the fix."""


def build_datamodule(cfg: DictConfig) -> MultiTaskDataModule:
    datamodule = instantiate(cfg.data, _convert_="all")
    if not isinstance(datamodule, MultiTaskDataModule):
        raise ConfigError(
            f"data._target_ must be a mtl.data.MultiTaskDataModule, got {type(datamodule).__name__}"
        )
    if cfg.get("sampler"):
        sampling = instantiate(cfg.sampler, _convert_="all")
        if not isinstance(sampling, Sampling):
            raise ConfigError(
                f"sampler._target_ must be mtl.data.samplers.Sampling, got "
                f"{type(sampling).__name__}"
            )
        try:
            sampling.check(datamodule.target_specs)
            datamodule.set_sampling(sampling)
        except SamplerConfigError as err:
            raise ConfigError(str(err)) from err
    return datamodule


def target_spec_for(task: Task, datamodule: MultiTaskDataModule) -> TargetSpec:
    """The data's spec of the task's target; with the training split's class frequencies
    when the task derives class weights from them (`class_weights: inverse|median`)."""
    spec = datamodule.target_specs[task.target]
    if not task.needs_class_frequencies:
        return spec
    try:
        frequencies = datamodule.class_frequencies(task.target)
    except (MetadataError, NotImplementedError) as err:
        raise ConfigError(
            f"tasks.{task.name}.class_weights={task.class_weights_option!r} needs the class "
            f"frequencies of the training split, which this data cannot report ({err}); give "
            f"one weight per class instead"
        ) from err
    log.info(
        "task '%s': class frequencies of '%s' in the training split %s",
        task.name, task.target, [round(float(f), 5) for f in frequencies],
    )  # fmt: skip
    return replace(spec, class_frequencies=tuple(float(f) for f in frequencies))


def build_tasks(cfg: DictConfig, datamodule: MultiTaskDataModule) -> dict[str, Task]:
    """Instantiate `cfg.tasks` (name -> config) and bind each to the data's target spec."""
    if not cfg.get("tasks"):
        raise ConfigError("no tasks configured; choose some, e.g. tasks=[seg,cls]")
    tasks: dict[str, Task] = {}
    for name, task_cfg in cfg.tasks.items():
        task = instantiate(task_cfg, name=name, _convert_="all")
        if task.target not in datamodule.target_specs:
            raise ConfigError(
                f"task '{name}' needs target '{task.target}', which data "
                f"'{type(datamodule).__name__}' does not provide; it provides "
                f"{sorted(datamodule.target_specs)} (set tasks.{name}.target or drop the task)"
            )
        try:
            task.bind(target_spec_for(task, datamodule))
        except TaskConfigError as err:
            raise ConfigError(str(err)) from err
        tasks[name] = task
    return tasks


def build_module(cfg: DictConfig, datamodule: MultiTaskDataModule) -> MultiTaskModule:
    tasks = build_tasks(cfg, datamodule)
    encoder = instantiate(cfg.encoder, in_channels=datamodule.in_channels, _convert_="all")
    decoder = instantiate(cfg.decoder, _convert_="all") if cfg.get("decoder") else None
    net = instantiate(cfg.model, _convert_="all")(encoder=encoder, tasks=tasks, decoder=decoder)
    weighting = instantiate(cfg.weighting, _convert_="all")(task_names=list(tasks))
    optimizer = build_optimizer_factory(cfg)
    schedule = instantiate(cfg.scheduler, _convert_="all") if cfg.get("scheduler") else None
    trainer_cfg = cfg.get("trainer") or {}
    module = instantiate(cfg.module, _convert_="all")(
        net=net,
        tasks=tasks,
        weighting=weighting,
        optimizer=optimizer,
        schedule=schedule,
        # Lightning ignores these under manual optimisation; the module applies them
        accumulate_grad_batches=int(trainer_cfg.get("accumulate_grad_batches") or 1),
        gradient_clip_val=trainer_cfg.get("gradient_clip_val"),
        gradient_clip_algorithm=trainer_cfg.get("gradient_clip_algorithm") or "norm",
    )
    check_optimized_metric(cfg, module)
    return module


def build_optimizer_factory(cfg: DictConfig) -> Callable[..., Any]:
    """The optimizer partial. Lightning's mixed-precision plugin refuses to clip gradients
    for a fused optimizer (one may unscale GradScaler's gradients inside its step, after
    clipping ran), so with `*-mixed` precision and clipping on, fused becomes false."""
    factory = instantiate(cfg.optimizer, _convert_="all")
    trainer_cfg = cfg.get("trainer") or {}
    precision = str(
        resolve_precision(trainer_cfg.get("precision", ""), trainer_cfg.get("accelerator"))
    )
    mixed = precision.endswith("-mixed") or precision in ("16", "bf16")
    if cfg.optimizer.get("fused") and mixed and trainer_cfg.get("gradient_clip_val"):
        log.info("optimizer.fused=true with mixed precision and clipping: using fused=false")
        factory = functools.partial(factory, fused=False)
    return factory


def check_optimized_metric(cfg: DictConfig, module: MultiTaskModule) -> None:
    """`optimized_metric` must be a validation metric this run logs, in the right direction."""
    metric, mode = cfg.get("optimized_metric"), cfg.get("optimized_mode", "max")
    if metric is None:
        return
    directions: dict[str, bool] = {"val/loss": False}
    for name, task in module.tasks.items():
        directions[f"val/{name}/loss"] = False
        directions.update({f"val/{name}/{m}": hib for m, hib in task.higher_is_better.items()})
    if metric not in directions:
        raise ConfigError(
            f"optimized_metric '{metric}' is not logged by this run; choose one of "
            f"{sorted(directions)}"
        )
    if mode not in ("max", "min"):
        raise ConfigError(f"optimized_mode must be 'max' or 'min', got {mode!r}")
    if (mode == "max") != directions[metric]:
        better = "higher" if directions[metric] else "lower"
        raise ConfigError(
            f"optimized_metric '{metric}' is better when {better}, but optimized_mode={mode}; "
            f"set optimized_mode={'max' if directions[metric] else 'min'}"
        )


def _instantiate_group(node: DictConfig | None) -> list[Any]:
    if not node:
        return []
    return [
        instantiate(item, _convert_="all") for item in node.values() if item and "_target_" in item
    ]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    return _instantiate_group(cfg.get("callbacks"))


def build_loggers(cfg: DictConfig) -> list[Any]:
    return _instantiate_group(cfg.get("logger"))


# trainer options the module applies itself (manual optimisation), see `build_module`
MODULE_OWNED_TRAINER_KEYS = {
    "accumulate_grad_batches": 1,
    "gradient_clip_val": None,
    "gradient_clip_algorithm": None,
}


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list, **kwargs: Any) -> L.Trainer:
    """`kwargs` go to `Trainer` as well (e.g. `plugins`); checkpoints are written atomically."""
    overrides = {k: v for k, v in MODULE_OWNED_TRAINER_KEYS.items() if k in cfg.trainer}
    if "precision" in cfg.trainer:
        overrides["precision"] = resolve_precision(
            cfg.trainer.precision, cfg.trainer.get("accelerator")
        )
    plugins = list(kwargs.pop("plugins", None) or [])
    if cfg.trainer.get("plugins"):
        plugins += list(instantiate(cfg.trainer.plugins, _convert_="all"))
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    kwargs["plugins"] = plugins
    return instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        _convert_="all",
        **overrides,
        **kwargs,
    )


def resolved_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
