"""Which checkpoint `ckpt_path` means: a file, a run folder, or `last`."""

from __future__ import annotations

import logging
from pathlib import Path

from mtl.training.checkpoint_io import CheckpointError

log = logging.getLogger(__name__)

LAST = "last.ckpt"


def _last_in(run_dir: Path) -> Path | None:
    for candidate in (run_dir / "checkpoints" / LAST, run_dir / LAST):
        if candidate.is_file():
            return candidate
    return None


def resolve_ckpt_path(value: str | None, output_dir: Path, runs_dir: Path | None) -> str | None:
    """`None` -> None; a `.ckpt` file -> itself; a run folder -> its `checkpoints/last.ckpt`;
    `last` -> this run's `last.ckpt` (a re-launch into the same folder: SLURM requeue, a sweep
    re-run) or else the newest `last.ckpt` under `runs_dir` (the previous runs of this task);
    `runs_dir=None` (a sweep job) starts from scratch when the job has no checkpoint yet.
    """
    if value is None or str(value) == "":
        return None
    if str(value) == "last":
        own = _last_in(output_dir)
        if own is not None:
            return str(own)
        if runs_dir is None:
            log.info("ckpt_path=last: no %s in %s yet; starting from scratch", LAST, output_dir)
            return None
        found = sorted(
            runs_dir.glob(f"*/checkpoints/{LAST}"),
            key=lambda p: p.stat().st_mtime,
        )
        if not found:
            raise CheckpointError(
                f"ckpt_path=last: no {LAST} in this run's folder ({output_dir}) nor under "
                f"{runs_dir}; pass the run folder to resume, ckpt_path=logs/train/runs/<time>"
            )
        log.info("ckpt_path=last: resuming the newest run, %s", found[-1])
        return str(found[-1])
    path = Path(str(value)).expanduser()
    if path.is_dir():
        last = _last_in(path)
        if last is None:
            raise CheckpointError(
                f"ckpt_path='{path}' is a folder without checkpoints/{LAST}; pass a .ckpt "
                f"file, e.g. {path}/checkpoints/best.ckpt"
            )
        return str(last)
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path='{path}' does not exist; pass a run folder (resumes its "
            f"checkpoints/{LAST}), a .ckpt file, or `last`"
        )
    return str(path)
