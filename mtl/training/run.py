"""The recipes behind `train.py` and `eval.py`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from mtl.data.bad_data import write_bad_data_report
from mtl.models.complexity import model_complexity
from mtl.training.builders import (
    ConfigError,
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    build_trainer,
    resolved_container,
)
from mtl.training.callbacks import LastEpochsCheckpoint
from mtl.training.config_check import check_config_keys
from mtl.training.delta_m_report import delta_m_metrics
from mtl.training.failure import clear_failure, record_failure
from mtl.training.precision import resolve_trainer_precision
from mtl.training.preemption import Preempted, PreemptionCheckpoint
from mtl.training.results import print_metrics_table, to_floats, write_json_atomic
from mtl.training.resume import resolve_ckpt_path
from mtl.training.sweep_job import start_job

log = logging.getLogger(__name__)

RUN_CONFIG = "config.yaml"
METRICS_FILE = "metrics.json"


def _finish_wandb() -> None:
    """End the W&B run so the next job of a multirun starts its own."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()


def train(cfg: DictConfig) -> dict[str, float]:
    """Seed, build, fit, test with the best checkpoint, write `metrics.json`; returns it.

    A run that raises leaves `failure.json` (error and traceback) in its folder; a run
    stopped by SIGTERM/SIGUSR1 saves `checkpoints/last.ckpt` and raises `Preempted`.
    """
    output_dir = Path(cfg.paths.output_dir)
    # before anything compares or saves the config: it names the precision actually used
    resolve_trainer_precision(cfg)
    if (finished := start_job(cfg, output_dir)) is not None:
        return finished  # skip_finished: this job's folder holds its results already
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        metrics = _train(cfg, output_dir)
    except Preempted:
        raise
    except BaseException as exc:
        if rank_zero_only.rank == 0:
            path = record_failure(output_dir, exc)
            log.error("run failed (%s: %s); recorded in %s", type(exc).__name__, exc, path)
        raise
    if rank_zero_only.rank == 0:
        clear_failure(output_dir)
    return metrics


def _runs_dir(cfg: DictConfig, output_dir: Path) -> Path | None:
    """Where `ckpt_path=last` looks for earlier runs; None inside a sweep (own folder only)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return None
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return output_dir.parent


def _train(cfg: DictConfig, output_dir: Path) -> dict[str, float]:
    # our training samplers skip the batches a mid-epoch checkpoint already trained on
    # (mtl.data.resumable); Lightning cannot see that and warns the resume is unreliable
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended")
    resolved = resolved_container(cfg)
    OmegaConf.save(resolved, output_dir / RUN_CONFIG)
    if cfg.get("extras", {}).get("print_config"):
        log.info("Composed config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    check_config_keys(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir, _runs_dir(cfg, output_dir))
    if ckpt_path:
        log.info("Resuming from %s", ckpt_path)

    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    callbacks = build_callbacks(cfg)
    preemption = next((c for c in callbacks if isinstance(c, PreemptionCheckpoint)), None)
    last_n = int(cfg.get("test_last_epochs") or 0)
    last_epochs = None
    if last_n > 0 and cfg.get("train", True) and cfg.get("test", True):
        last_epochs = LastEpochsCheckpoint(last_n, output_dir / "checkpoints" / "last_epochs")
        callbacks.append(last_epochs)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, callbacks, loggers)
    complexity = model_complexity(module.net, datamodule.input_shape)
    log.info(
        "Model: %s parameters (%s shared), %.3f GFLOPs per image",
        f"{int(complexity['model/params/total']):,}",
        f"{int(complexity['model/params/shared']):,}",
        complexity["model/gflops_per_image"],
    )
    for logger in loggers:
        logger.log_hyperparams(resolved)
        logger.log_metrics(complexity, step=0)

    metrics: dict[str, float] = dict(complexity)
    try:
        if cfg.get("train", True):
            try:
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            except SIGTERMException as stop:
                saved = preemption.saved if preemption is not None else None
                raise Preempted(saved, trainer.global_step, trainer.current_epoch) from stop
            metrics.update(_best_validation(trainer))
            metrics["train/nonfinite_skipped"] = float(module.nonfinite_skipped)
        if cfg.get("test", True):
            if cfg.get("train", True):
                _test_checkpoint_weights(trainer)
            ckpt = _best_checkpoint(trainer) if cfg.get("train", True) else ckpt_path
            trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
            metrics.update(_stage_metrics(trainer, "test/"))
            if last_epochs is not None:
                metrics.update(_test_last_epochs(trainer, module, datamodule, last_epochs.paths))
            report = cfg.get("delta_m") or {}
            if report.get("baselines"):
                metrics.update(
                    delta_m_metrics(
                        metrics,
                        list(module.tasks.values()),
                        report.baselines,
                        report.get("metrics"),
                        stage=report.get("stage") or "test",
                    )
                )
    finally:
        _finish_wandb()

    if trainer.is_global_zero:
        write_json_atomic(output_dir / METRICS_FILE, metrics)
        write_bad_data_report(datamodule, output_dir)
        if cfg.get("extras", {}).get("print_metrics"):
            print_metrics_table(metrics, f"Results ({output_dir / METRICS_FILE})")
    return metrics


def evaluate(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Test a checkpoint; by default rebuilds the model from the run's saved config, with
    the command line's dotted `overrides` (e.g. `data.num_test=1000`) applied on top."""
    ckpt_path = Path(str(cfg.ckpt_path)).expanduser()
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"checkpoint '{ckpt_path}' not found; pass ckpt_path=<run dir>/checkpoints/best.ckpt"
        )
    if cfg.get("use_run_config", True):
        cfg = with_run_config(cfg, ckpt_path, overrides)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_config_keys(cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    loggers = build_loggers(cfg)
    trainer = build_trainer(cfg, callbacks=[], loggers=loggers)
    try:
        trainer.test(module, datamodule=datamodule, ckpt_path=str(ckpt_path))
    finally:
        _finish_wandb()
    metrics = _stage_metrics(trainer, "test/")
    if trainer.is_global_zero:
        write_json_atomic(output_dir / METRICS_FILE, metrics)
        if cfg.get("extras", {}).get("print_metrics"):
            print_metrics_table(metrics, f"Evaluation of {ckpt_path}")
    return metrics


def find_run_config(ckpt_path: Path) -> Path | None:
    """`<run>/checkpoints/x.ckpt` -> `<run>/config.yaml`, if it is there."""
    for folder in (ckpt_path.parent, ckpt_path.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder / RUN_CONFIG
    return None


def with_run_config(cfg: DictConfig, ckpt_path: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The training run's data/tasks/model config, with this evaluation's trainer, loggers,
    paths and extras, then the dotted `overrides`. Fails loudly if the run's config is missing.
    """
    path = find_run_config(ckpt_path)
    if path is None:
        raise ConfigError(
            f"no {RUN_CONFIG} beside '{ckpt_path}' or its parent; pass the model config "
            f"yourself with use_run_config=false (and the same data/tasks/model/encoder "
            f"overrides the run used)"
        )
    run_cfg = OmegaConf.load(path)
    merged = OmegaConf.merge(run_cfg, {k: cfg[k] for k in ("trainer", "paths", "extras")})
    with open_dict(merged):
        merged.logger = cfg.get("logger")
        merged.ckpt_path = str(ckpt_path)
        dotted = [o for o in overrides if _is_run_override(o)]
        if dotted:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(dotted))
    log.info("Evaluating with the run config %s", path)
    return merged


def _is_run_override(override: str) -> bool:
    """`data.num_test=1000` changes the run's config; group choices (`logger=none`), Hydra's
    own keys and this script's keys are already in the evaluation config."""
    key = override.split("=", 1)[0].lstrip("+~")
    own = ("hydra", "trainer", "paths", "extras", "logger", "ckpt_path", "use_run_config")
    return "=" in override and "." in key and key.split(".")[0] not in own


def _monitoring_checkpoint(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The checkpoint callback that tracks a metric (the other one keeps `last.ckpt`)."""
    return next(
        (c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor),
        None,
    )


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    callback = _monitoring_checkpoint(trainer)
    if callback is not None and callback.best_model_path:
        return callback.best_model_path
    log.warning("No best checkpoint was saved; testing the final weights")
    return None


def _best_validation(trainer: L.Trainer) -> dict[str, float]:
    callback = _monitoring_checkpoint(trainer)
    if callback is not None and callback.best_model_score is not None:
        score = float(callback.best_model_score)
        return {f"best_{callback.monitor}": score}
    return {}


def _test_checkpoint_weights(trainer: L.Trainer) -> None:
    """Make the tests after `fit` score the weights the checkpoints hold.

    Under Lightning's `WeightAveraging` (`callbacks=ema`, SWA) a checkpoint's `state_dict` is
    the averaged model, the one validation scored and checkpoint selection chose. Still
    attached after `fit`, the callback would load the raw training weights instead when
    `trainer.test` reads the checkpoint, and `metrics.json` would disagree with `eval.py`.
    """
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, WeightAveraging)]


def _test_last_epochs(
    trainer: L.Trainer, module: L.LightningModule, datamodule: Any, paths: Sequence[Path]
) -> dict[str, float]:
    """Test each of the last epochs' weights; mean and std as `test_last<N>[_std]/...`."""
    runs = []
    for path in paths:
        trainer.test(module, datamodule=datamodule, ckpt_path=str(path), verbose=False)
        runs.append(_stage_metrics(trainer, "test/"))
    stage = f"test_last{len(runs)}"
    log.info("Test metrics averaged over the last %d epochs (%s)", len(runs), stage)
    out: dict[str, float] = {}
    for key in runs[0] if runs else ():
        values = torch.tensor([run[key] for run in runs], dtype=torch.float64)
        name = key.removeprefix("test/")
        out[f"{stage}/{name}"] = float(values.mean())
        out[f"{stage}_std/{name}"] = float(values.std(unbiased=False))
    return out


def _stage_metrics(trainer: L.Trainer, prefix: str) -> dict[str, Any]:
    metrics = to_floats(trainer.callback_metrics)
    return {k: v for k, v in metrics.items() if k.startswith(prefix)}
