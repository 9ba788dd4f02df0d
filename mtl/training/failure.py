"""A failed run leaves `failure.json` beside its config, so sweeps and reports can list it."""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timezone
from pathlib import Path

from mtl.training.results import write_json_atomic

log = logging.getLogger(__name__)

FAILURE_FILE = "failure.json"


def record_failure(output_dir: str | Path, exc: BaseException) -> Path:
    """Write `{error_type, message, traceback, time}`; never raises (the real error matters)."""
    path = Path(output_dir) / FAILURE_FILE
    record = {
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        write_json_atomic(path, record)
    except OSError as err:  # a full disk must not hide the original error
        log.error("could not write %s: %s", path, err)
    return path


def clear_failure(output_dir: str | Path) -> None:
    """A run that finishes in a folder where an earlier attempt failed is no longer failed."""
    (Path(output_dir) / FAILURE_FILE).unlink(missing_ok=True)
