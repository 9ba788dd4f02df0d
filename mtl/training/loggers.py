"""Logger factories that need more than a `_target_`."""

from __future__ import annotations

import csv
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


def wandb_is_configured() -> bool:
    """True when this machine can log to W&B online (API key in env or in ~/.netrc)."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def group_choices(groups: Mapping[str, str]) -> dict[str, str]:
    """`{label: config group}` -> `{label: the group option this run uses}`, from Hydra's
    record of the composition; empty outside a Hydra app (the compose API in tests)."""
    from hydra.core.hydra_config import HydraConfig

    if not groups or not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {label: str(choices[group]) for label, group in groups.items() if group in choices}


def run_labels(
    label_groups: Mapping[str, str] | None, labels: Mapping[str, Any] | None
) -> dict[str, str]:
    """What tells this run from the others of its sweep, e.g. `{"method": "uw", "seed": "1"}`."""
    out = group_choices(label_groups or {})
    out.update({k: str(v) for k, v in (labels or {}).items() if v is not None})
    return out


def wandb_logger(
    save_dir: str,
    project: str = "mtl",
    name: str | None = None,
    group: str | None = None,
    job_type: str | None = "train",
    tags: Sequence[str] | None = None,
    offline: bool | None = None,
    log_model: bool = False,
    label_groups: Mapping[str, str] | None = None,
    labels: Mapping[str, Any] | None = None,
    **kwargs,
) -> WandbLogger:
    """A W&B logger that runs offline, without an account, unless W&B is set up online.

    The run's labels (`label_groups`: Hydra group choices such as the weighting method;
    `labels`: values such as the seed) go into its W&B config, so the UI can group runs by
    them, and into its tags as `label:value`, so runs can be filtered by them.
    """
    if offline is None:
        offline = not wandb_is_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    found = run_labels(label_groups, labels)
    all_tags = [*(tags or ()), *(f"{k}:{v}" for k, v in found.items())]
    if found:
        kwargs["config"] = {**found, **dict(kwargs.get("config") or {})}
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        job_type=job_type,
        tags=[t[:64] for t in dict.fromkeys(all_tags)] or None,  # W&B: <= 64 characters
        offline=offline,
        log_model=log_model,
        **kwargs,
    )


class _MergingWriter(ExperimentWriter):
    """Keeps every column already in the file. Under `ddp_spawn` the launching process and
    the spawned rank 0 each hold a writer that knows only its own columns; Lightning's writer
    then rewrites the file with its own header and fails on the other's rows."""

    def _file_columns(self) -> list[str]:
        if not self._fs.isfile(self.metrics_file_path):
            return []
        with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
            return next(csv.reader(handle), [])

    def save(self) -> None:
        known = set(self._file_columns())
        if known - set(self.metrics_keys):
            self.metrics_keys = sorted(known | set(self.metrics_keys))
        super().save()


class CSVLogger(LightningCSVLogger):
    """Lightning's CSV logger with a writer that survives several processes (see above)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _MergingWriter(log_dir=self.log_dir)
        return self._experiment
