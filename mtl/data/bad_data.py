"""Bad files on disk: the common error class, `data.skip_bad`, and the end-of-run report.

Why: one corrupt file among thousands should not silently poison a run, nor cost it. By
default a bad file stops setup, before training, with an error naming the file, the fault
and the fix. With `data.skip_bad=true` the sample (`.npy` datasets) or case (nnU-Net) it
belongs to is left out of its split before training, a warning names it, and it is listed
in `datamodule.bad_data`, which `write_bad_data_report` saves as `<run dir>/bad_data.json`.
A split emptied by skipping is still an error: there would be nothing to train or test on.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from mtl.data.atomic_io import write_json_atomic

log = logging.getLogger(__name__)

BAD_DATA_FILE = "bad_data.json"
SKIP_OPTION = "data.skip_bad"


class BadDataError(ValueError):
    """A data file or folder is missing, unreadable, or holds what its layout forbids.

    `path` is the offending file (or folder) when one is to blame, for the report.
    """

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path)


def add_skip_hint(error: BadDataError, what: str) -> None:
    """End the message with the other way out, keeping the error's class and traceback."""
    hint = f" (or set {SKIP_OPTION}=true to leave {what} out and list it in {BAD_DATA_FILE})"
    error.args = (f"{error.args[0] if error.args else ''}{hint}", *error.args[1:])


def skipped_entry(split: str, error: BadDataError, fallback: Path, what: str) -> dict[str, str]:
    """One line of the report for a skipped sample or case, logged as a warning."""
    file = error.path if error.path is not None else fallback
    log.warning("%s=true: leaving %s out of the %s split: %s", SKIP_OPTION, what, split, error)
    return {"split": split, "file": str(file), "error": str(error)}


def check_split_left(
    split: str,
    kept: int,
    skipped: list[dict[str, str]],
    error_type: type[BadDataError],
    unit: str = "samples",
) -> None:
    """Skipping may not empty a split: nothing would be left to train, validate or test on."""
    if kept > 0:
        return
    files = [entry["file"] for entry in skipped if entry["split"] == split]
    raise error_type(
        f"the {split} split is empty: all {len(files)} of its {unit} were skipped as bad data "
        f"({SKIP_OPTION}=true), e.g. {files[:3]}; fix or replace those files (the warnings "
        f"above say what is wrong with each)"
    )


def write_bad_data_report(datamodule: Any, output_dir: str | Path) -> Path | None:
    """Save `datamodule.bad_data` as `<output_dir>/bad_data.json` and log a summary line.

    Written whenever skipping is on (an empty list then means nothing was skipped); nothing
    is written for a datamodule without `skip_bad` or with it off.
    """
    entries: list[dict[str, str]] = list(getattr(datamodule, "bad_data", None) or [])
    if not getattr(datamodule, "skip_bad", False) and not entries:
        return None
    path = Path(output_dir) / BAD_DATA_FILE
    write_json_atomic(path, entries)
    if entries:
        by_split = Counter(entry["split"] for entry in entries)
        shares = ", ".join(f"{split} {n}" for split, n in sorted(by_split.items()))
        log.warning("bad data: %d files skipped (%s); listed in %s", len(entries), shares, path)
    else:
        log.info("bad data: nothing skipped (%s=true); %s is empty", SKIP_OPTION, path)
    return path
