"""What a job of a Hydra multirun does before it trains.

Two things make a sweep safe to re-run and to run with DDP:

- **Skip finished jobs** (`skip_finished=true`, set by `experiments/run.py`): a job whose
  folder already holds `metrics.json` written by a run of the *same* config returns those
  metrics instead of training again. Hydra rewrites `.hydra/overrides.yaml` before the job
  starts, so the comparison uses the resolved `config.yaml` that the earlier run saved.
  What a run of a *different* config left (`metrics.json`, `checkpoints/`) is moved aside
  (`*.stale`), so neither its results are reported nor its `last.ckpt` resumed
  (`ckpt_path=last`) as this job's.
- **DDP inside a multirun**: Lightning's `ddp` strategy starts one process per extra device
  by re-running this script with `sys.argv`, which in a multirun would re-run the whole
  sweep (Lightning #11300, Hydra #2070): here the command line becomes this job's own
  overrides, in this job's folder, so the children run exactly this job. And the previous
  job's DDP leaves a process group whose peers have exited and `LOCAL_RANK`/`MASTER_PORT`
  in the environment (the next job would then wait for ranks that never come, or talk to
  dead ones): both are reset before each job.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

# top-level config keys that do not change what a run computes: a finished run is reused
# when everything else is equal
IGNORED_KEYS = (
    "paths",
    "logger",
    "extras",
    "tags",
    "group",
    "job_type",
    "skip_finished",
    "ckpt_path",
)
# what a run leaves in its folder that belongs to its config
_RUN_OUTPUTS = ("metrics.json", "checkpoints")

# options of Hydra's command line that take a separate value (`-cn train`)
_VALUE_FLAGS = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"}
_MULTIRUN_FLAGS = {"-m", "--multirun"}
# what Lightning's DDP launchers put in the environment of the launching process
_DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_original_argv: list[str] | None = None
_original_env: dict[str, str | None] | None = None


def start_job(cfg: DictConfig, output_dir: Path) -> dict[str, float] | None:
    """Call first in `train()`: returns the stored metrics when this job is already done
    (the caller returns them), else prepares the job and returns None."""
    finished = finished_metrics(cfg, output_dir)
    if finished is None and in_multirun():
        reset_distributed_state()
        use_job_command_line(cfg, output_dir)
    return finished


def in_multirun() -> bool:
    """True inside a job of a Hydra multirun (not in single runs or the compose API)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def reset_distributed_state() -> None:
    """Leave no process group and no DDP environment from an earlier job of this process."""
    import torch.distributed as dist

    global _original_env
    if _original_env is None:
        _original_env = {key: os.environ.get(key) for key in _DDP_ENV}
    for key, value in _original_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finished_metrics(cfg: DictConfig, output_dir: Path) -> dict[str, float] | None:
    """The metrics of a finished run of this same config in `output_dir`, or None (after
    moving aside what a run of another config left there)."""
    from mtl.training.run import METRICS_FILE, RUN_CONFIG

    if not cfg.get("skip_finished"):
        return None
    metrics_path = output_dir / METRICS_FILE
    config_path = output_dir / RUN_CONFIG
    if config_path.is_file() and same_run_config(OmegaConf.load(config_path), cfg):
        if metrics_path.is_file():
            log.info("Skipping %s: finished before with this config (skip_finished)", output_dir)
            return json.loads(metrics_path.read_text())
        return None  # started before and did not finish: ckpt_path=last resumes it
    if any((output_dir / name).exists() for name in _RUN_OUTPUTS):
        log.warning(
            "%s holds results of a run with a different config; moved to *.stale, training again",
            output_dir,
        )
        _set_aside(output_dir)
    return None


def _set_aside(output_dir: Path) -> None:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank != 0:  # every rank of a SLURM job runs this; one moves
        return
    for name in _RUN_OUTPUTS:
        path, stale = output_dir / name, output_dir / f"{name}.stale"
        if not path.exists():
            continue
        if stale.is_dir():
            shutil.rmtree(stale)
        path.replace(stale)


def same_run_config(saved: DictConfig, cfg: DictConfig) -> bool:
    """True when two configs train the same thing (all keys but `IGNORED_KEYS` equal)."""
    return _comparable(saved) == _comparable(cfg)


def _comparable(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without `IGNORED_KEYS`, with the `paths` values written back as
    `${paths.<key>}` wherever they appear (`data.cache_dir`, `trainer.default_root_dir`), so
    a sweep folder that moved still counts as the same run; YAML round-tripped, so values
    compare as the saved config.yaml stores them."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(container, dict)
    paths = container.get("paths") or {}
    found = [(str(v), f"${{paths.{k}}}") for k, v in paths.items() if isinstance(v, str) and v]
    found.sort(key=lambda item: len(item[0]), reverse=True)  # output_dir before log_dir
    plain = {k: _unpath(v, found) for k, v in container.items() if k not in IGNORED_KEYS}
    loaded = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(plain)))
    assert isinstance(loaded, dict)
    return loaded


def _unpath(value: Any, paths: list[tuple[str, str]]) -> Any:
    if isinstance(value, dict):
        return {k: _unpath(v, paths) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpath(v, paths) for v in value]
    if isinstance(value, str):
        for path, name in paths:
            if value == path or value.startswith(path + "/"):
                return name + value[len(path) :]
    return value


def use_job_command_line(cfg: DictConfig, output_dir: Path) -> None:
    """In a multirun job, make `sys.argv` and Hydra's run dir this job's own (see module doc).

    `ckpt_path=last` is passed on resolved: the re-launched ranks run as single runs, where
    `last` would also look in the sibling jobs' folders."""
    from hydra.core.hydra_config import HydraConfig

    from mtl.training.resume import resolve_ckpt_path

    if not in_multirun():
        return
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    if str(cfg.get("ckpt_path")) == "last":
        resolved = resolve_ckpt_path("last", output_dir, runs_dir=None)
        overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+") != "ckpt_path"]
        overrides.append(f"ckpt_path={resolved or 'null'}")
    global _original_argv
    if _original_argv is None:
        _original_argv = list(sys.argv)
    sys.argv = [_original_argv[0], *_flags(_original_argv[1:]), *overrides]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def _flags(args: list[str]) -> list[str]:
    """Hydra's command-line options without the multirun flag and without overrides."""
    kept: list[str] = []
    take_next = False
    for arg in args:
        if take_next:
            kept.append(arg)
            take_next = False
        elif arg in _MULTIRUN_FLAGS:
            continue
        elif arg in _VALUE_FLAGS:
            kept.append(arg)
            take_next = True
        elif arg.startswith("-"):
            kept.append(arg)
    return kept
