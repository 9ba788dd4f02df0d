"""Which jobs of a sweep folder finished, failed or never ended, read from their files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

METRICS_FILE = "metrics.json"  # written by a finished run (mtl.training.run)
FAILURE_FILE = "failure.json"  # written by a failed run: {"error_type", "message", "traceback"}


@dataclass(frozen=True)
class JobStatus:
    folder: Path
    state: str  # "done" | "failed" | "incomplete"
    message: str = ""


def job_status(folder: Path) -> JobStatus:
    if (folder / METRICS_FILE).is_file():
        return JobStatus(folder, "done")
    failure = folder / FAILURE_FILE
    if failure.is_file():
        try:
            info = json.loads(failure.read_text())
            message = f"{info.get('error_type', 'error')}: {info.get('message', '')}"
        except (OSError, ValueError) as exc:
            message = f"unreadable {FAILURE_FILE} ({exc})"
        return JobStatus(folder, "failed", message.strip())
    return JobStatus(folder, "incomplete", "no metrics.json (crashed, killed or still running)")


def sweep_status(sweep_dir: Path) -> list[JobStatus]:
    """One entry per job folder (a sub-folder with Hydra's `.hydra/` record), sorted."""
    if not sweep_dir.is_dir():
        return []
    jobs = sorted(p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml"))
    return [job_status(job) for job in jobs]


def summary_lines(sweep_dir: Path) -> list[str]:
    """`done 6/7` and a line per job that did not finish."""
    statuses = sweep_status(sweep_dir)
    done = sum(s.state == "done" for s in statuses)
    lines = [f"{sweep_dir}: {done}/{len(statuses)} jobs done"]
    lines += [f"  {s.state}: {s.folder.name}  {s.message}" for s in statuses if s.state != "done"]
    return lines
