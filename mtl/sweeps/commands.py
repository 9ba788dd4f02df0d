"""Command lines for an ablation: one `train.py -m` per sweep, then `python -m mtl.report`.

Every sweep goes to a stable folder (`<root>/<ablation>/<size>/<sweep>/`) and every job to a
sub-folder named by the values of its axes (`seed=0,weighting=uw`), so launching the same
ablation again lands each job in its old folder, where `skip_finished=true` returns its
stored metrics instead of training again, and `ckpt_path=last` continues an unfinished job
from its `last.ckpt`.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl.sweeps.spec import AblationSpec, RawValue, SpecError, Sweep, override_key

# keys every ablation job sets besides the spec's overrides
JOB_KEYS = ("skip_finished", "ckpt_path", "group", "job_type", "tags")
MAX_DIRNAME = 200  # a folder name must stay below the file system's 255 bytes


@dataclass(frozen=True)
class Planned:
    sweep: Sweep
    sweep_dir: Path
    command: list[str]


def hydra_value(value: Any) -> str:
    """A YAML axis value in Hydra's override syntax."""
    if isinstance(value, RawValue):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    return str(value)


def sweep_argument(key: str, values: Sequence[Any]) -> str:
    """`key=a,b,c`, or `key=choice([a],[b])` when a value is itself a list."""
    rendered = [hydra_value(v) for v in values]
    if any(isinstance(v, (list, tuple)) for v in values):
        return f"{key}=choice({','.join(rendered)})"
    return f"{key}={','.join(rendered)}"


def job_dirnames(axes: dict[str, list[Any]]) -> list[str]:
    """The sub-folder of each job, as Hydra's `override_dirname` will name it; fails on a
    name that would nest folders, collide or be too long. Axes given on the command line
    (raw sweep strings) are not expanded here and are checked by Hydra itself."""
    expandable = {k: v for k, v in axes.items() if not any(isinstance(x, RawValue) for x in v)}
    names = []
    for combo in itertools.product(*expandable.values()):
        items = sorted(f"{k}={hydra_value(v)}" for k, v in zip(expandable, combo, strict=True))
        names.append(",".join(items))
    for name in names:
        if "/" in name:
            raise SpecError(f"job folder '{name}' would contain '/': use values without it")
        if len(name) > MAX_DIRNAME:
            raise SpecError(
                f"job folder '{name[:60]}...' is {len(name)} characters (> {MAX_DIRNAME}): "
                f"use shorter axis values"
            )
    if len(set(names)) != len(names):
        raise SpecError(f"two jobs would share a folder: {sorted(names)}")
    return names


def train_command(
    sweep: Sweep,
    sweep_dir: Path,
    group: str,
    tags: Sequence[str],
    python: str,
    train_py: Path,
) -> list[str]:
    """`python train.py -m <overrides> <axes> ...` for one sweep, resumable in `sweep_dir`."""
    job_dirnames(sweep.axes)
    fixed_keys = sorted({override_key(o) for o in sweep.overrides} | set(JOB_KEYS))
    return [
        python,
        str(train_py),
        "-m",
        *sweep.overrides,
        *(sweep_argument(k, v) for k, v in sweep.axes.items()),
        "skip_finished=true",
        "ckpt_path=last",  # a job killed or preempted before continues from its last.ckpt
        f"group={group}",
        f"job_type={sweep.job_type}",
        f"tags=[{','.join(tags)}]",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(fixed_keys)}]",
    ]


def plan_ablation(
    spec: AblationSpec,
    size: str,
    root: Path,
    extra: Sequence[str] = (),
    python: str = "python",
    train_py: Path = Path("train.py"),
) -> list[Planned]:
    """Every multirun of `spec` at `size`, with its folder and command."""
    group = f"{spec.name}-{size}"
    planned = []
    for sweep in spec.plan(size, extra):
        sweep_dir = root / spec.name / size / sweep.name
        command = train_command(sweep, sweep_dir, group, [spec.name, size], python, train_py)
        planned.append(Planned(sweep, sweep_dir, command))
    return planned


def report_command(
    spec: AblationSpec, planned: Sequence[Planned], out_dir: Path, python: str = "python"
) -> list[str]:
    """`python -m mtl.report <runs> [--rows ...] [--baselines ...] --out ... --stage ...`."""
    by_name = {p.sweep.name: p.sweep_dir for p in planned}
    command = [python, "-m", "mtl.report", str(by_name["runs"])]
    if spec.report.rows:
        command += ["--rows", ",".join(spec.report.rows)]
    baselines = [str(by_name[f"baseline_{b}"]) for b in spec.report.baselines]
    if baselines:
        command += ["--baselines", *baselines]
    command += ["--out", str(out_dir), "--stage", spec.report.stage, *spec.report.args]
    return command


def shell_line(command: Sequence[str]) -> str:
    """The command as one line to paste into a shell."""
    return shlex.join(command)
