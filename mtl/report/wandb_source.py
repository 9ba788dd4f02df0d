"""Runs from a W&B project (`--wandb entity/project [--group G]`), as `RunRecord`s.

What `train.py` logs to W&B maps onto a run folder: the resolved config (W&B config) for
`config.yaml`, the summary for `metrics.json`, the run state for how it ended and the history
for the CSV log. Group choices are recovered from the config (`collect.choices_from_config`),
since W&B does not see Hydra's record of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mtl.report.collect import (
    FAILED,
    MISSING,
    OK,
    History,
    ReportError,
    RunRecord,
    choices_from_config,
)

HISTORY_SAMPLES = 2000  # points per run for training curves (W&B samples longer histories)
FINISHED_STATES = frozenset({"finished"})
FAILED_STATES = frozenset({"failed", "crashed", "killed"})
OFFLINE_MODES = frozenset({"offline", "disabled", "dryrun"})


def default_api() -> Any:
    """`wandb.Api()`, or a clear error when W&B cannot be reached from here."""
    try:
        import wandb
    except ImportError as err:
        raise ReportError("reading a W&B project needs the `wandb` package") from err
    from mtl.training.loggers import wandb_is_configured

    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in OFFLINE_MODES:
        raise ReportError(
            f"WANDB_MODE={mode}: W&B is offline here; unset WANDB_MODE to read a project, or "
            "report from the run directories (python -m mtl.report <sweep dir>)"
        )
    if not wandb_is_configured():
        raise ReportError(
            "no W&B API key: run `wandb login` or set WANDB_API_KEY, or report from the run "
            "directories (python -m mtl.report <sweep dir>)"
        )
    try:
        return wandb.Api()
    except Exception as err:
        raise ReportError(f"could not connect to W&B ({type(err).__name__}: {err})") from err


def wandb_records(project: str, group: str | None = None, api: Any = None) -> list[RunRecord]:
    """Every run of `project` (`entity/project`), or of one group of it."""
    if project.count("/") != 1 or not all(project.split("/")):
        raise ReportError(f"--wandb takes 'entity/project', got '{project}'")
    api = api if api is not None else default_api()
    filters = {"group": group} if group else None
    try:
        runs = list(api.runs(project, filters=filters))
    except Exception as err:
        raise ReportError(
            f"could not list the runs of W&B project '{project}' ({type(err).__name__}: {err}); "
            "is this machine online and the project name right?"
        ) from err
    if not runs:
        where = f"group '{group}' of " if group else ""
        raise ReportError(f"no runs in {where}W&B project '{project}'")
    source = f"wandb:{project}" + (f"/{group}" if group else "")
    return [record_from_run(run, source, index) for index, run in enumerate(runs)]


def record_from_run(run: Any, source: str, index: int = 0) -> RunRecord:
    """One W&B public-API run as a `RunRecord`."""
    config = plain_config(getattr(run, "config", {}) or {})
    state = str(getattr(run, "state", "") or "unknown")
    metrics = _numbers(getattr(run, "summary", {}) or {})
    if state in FINISHED_STATES:
        status, message = OK, ""
    elif state in FAILED_STATES:
        status, message = FAILED, f"W&B run state '{state}'"
    else:
        status, message = MISSING, f"W&B run state '{state}': not finished"
    path = getattr(run, "path", None)
    name = "/".join(map(str, path)) if isinstance(path, (list, tuple)) else str(run.id)
    return RunRecord(
        name=name,
        status=status,
        config=config,
        choices=choices_from_config(config),
        overrides={},
        metrics=metrics if status == OK else {},
        message=message,
        sweep=source,
        order=(index,),
        history=lambda: _history(run),
    )


def plain_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """W&B config as the nested dict `train.py` logged: `{"value": v}` wrappers removed and
    dotted keys (`tasks.seg._target_`) nested again."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if str(key).startswith("_wandb"):
            continue
        if isinstance(value, Mapping) and set(value) <= {"value", "desc"} and "value" in value:
            value = value["value"]
        node = out
        parts = str(key).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _numbers(values: Any) -> dict[str, float]:
    items = values.items() if hasattr(values, "items") else []
    return {
        str(k): float(v)
        for k, v in items
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _history(run: Any) -> History:
    rows = run.history(samples=HISTORY_SAMPLES, pandas=False)
    return [_numbers(row) for row in rows]
