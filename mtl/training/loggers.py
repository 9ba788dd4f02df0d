"""Logger factories that need more than a `_target_`."""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


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


def wandb_logger(
    save_dir: str,
    project: str = "mtl",
    name: str | None = None,
    group: str | None = None,
    job_type: str | None = "train",
    tags: Sequence[str] | None = None,
    offline: bool | None = None,
    log_model: bool = False,
    **kwargs,
) -> WandbLogger:
    """A W&B logger that runs offline, without an account, unless W&B is set up online."""
    if offline is None:
        offline = not wandb_is_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=group,
        job_type=job_type,
        tags=list(tags) if tags else None,
        offline=offline,
        log_model=log_model,
        **kwargs,
    )
