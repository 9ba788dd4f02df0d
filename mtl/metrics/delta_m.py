"""delta_m: the mean relative change of a multi-task result against single-task baselines.

For metric i of task t with multi-task value M and single-task baseline B,

    r_ti = (-1)^s (M - B) / B,     s = 1 if higher is better else 0,

so r > 0 means worse than the baseline. Both published forms are returned, in percent
(lower is better):

* `per_metric` (Nash-MTL, FAMO): 100 * mean of r over all metrics of all tasks; a task with
  more metrics (NYUv2 normals: 5 of 9) weighs more.
* `per_task` (LibMTL): 100 * mean over tasks of (mean of r within the task).

Baselines come from single-task runs recorded by this framework (`load_baselines`, from their
`metrics.json`) or from published numbers (`load_baselines_yaml`, e.g.
`conf/baselines/nyuv2_stl_segnet_mtan.yaml`). Both sides must be measured the same way (same
split, same metric definitions, checkpoint chosen on validation).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

from omegaconf import OmegaConf

METRICS_FILE = "metrics.json"  # what `mtl.training.run.train` writes in each run directory
# logged values that are not scores: the training loss (its scale depends on the weighting)
# and the boundary metric's chosen threshold
NOT_SCORES: tuple[str, ...] = ("loss", "ods_threshold")

Nested = Mapping[str, Mapping[str, float]]


def _frozen(nested: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in nested.items()})


@dataclass(frozen=True)
class DeltaM:
    """Both forms of delta_m (percent, lower is better) and what they are made of.

    `relative[task][metric]` is 100 * (-1)^s (M - B) / B (positive = worse than baseline);
    `per_task_means[task]` its mean within the task.
    """

    per_metric: float
    per_task: float
    relative: Mapping[str, Mapping[str, float]] = field(repr=False)
    per_task_means: Mapping[str, float] = field(repr=False)

    def as_flat(self, prefix: str = "delta_m") -> dict[str, float]:
        """`{prefix}/per_metric`, `{prefix}/per_task`, `{prefix}/{task}/{metric}`: for logs."""
        out = {f"{prefix}/per_metric": self.per_metric, f"{prefix}/per_task": self.per_task}
        for task, metrics in self.relative.items():
            out.update({f"{prefix}/{task}/{m}": v for m, v in metrics.items()})
        return out


def _select(
    results: Nested,
    baselines: Nested,
    metrics: Mapping[str, Sequence[str]] | None,
    exclude: Collection[str],
) -> dict[str, list[str]]:
    """Which metrics count: the caller's choice, checked, or every score present in both."""
    if metrics is not None:
        chosen = {task: list(names) for task, names in metrics.items()}
        for task, names in chosen.items():
            for name in names:
                for side, values in (("result", results), ("baseline", baselines)):
                    if name not in values.get(task, {}):
                        raise ValueError(f"metric '{task}/{name}' is missing in the {side}")
    else:
        chosen = {}
        for task, values in results.items():
            if task not in baselines:
                raise ValueError(
                    f"task '{task}' has no baseline (baselines hold {sorted(baselines)}); "
                    f"give one or choose the metrics that count with `metrics=`"
                )
            names = [n for n in values if n in baselines[task] and n not in exclude]
            if not names:
                raise ValueError(
                    f"task '{task}' shares no metric with its baseline (result: "
                    f"{sorted(values)}, baseline: {sorted(baselines[task])})"
                )
            chosen[task] = names
    chosen = {task: names for task, names in chosen.items() if names}
    if not chosen:
        raise ValueError("no metric to compare: results or `metrics` are empty")
    return chosen


def relative_change(value: float, baseline: float, higher_is_better: bool, name: str) -> float:
    """(-1)^s (M - B) / B, with s = 1 if higher is better (positive = worse)."""
    if not math.isfinite(baseline) or baseline == 0:
        raise ValueError(f"baseline of '{name}' must be finite and non-zero, got {baseline}")
    if not math.isfinite(value):
        raise ValueError(f"result of '{name}' must be finite, got {value}")
    change = (value - baseline) / baseline
    return -change if higher_is_better else change


def delta_m(
    results: Nested,
    baselines: Nested,
    directions: Mapping[str, Mapping[str, bool]],
    metrics: Mapping[str, Sequence[str]] | None = None,
    exclude: Collection[str] = NOT_SCORES,
) -> DeltaM:
    """delta_m of `results` against `baselines`, both `{task: {metric: value}}`.

    `directions` is `{task: {metric: higher_is_better}}` (each task's `higher_is_better`).
    `metrics` (`{task: [metric, ...]}`) chooses what counts; by default every metric present in
    both results and baselines except the names in `exclude`, for every task of `results`.
    The formula divides by B as published (not |B|), so keep metrics in their natural units
    (errors positive).
    """
    chosen = _select(results, baselines, metrics, exclude)
    relative: dict[str, dict[str, float]] = {}
    for task, names in chosen.items():
        relative[task] = {}
        for name in names:
            key = f"{task}/{name}"
            direction = directions.get(task, {}).get(name)
            if direction is None:
                raise ValueError(
                    f"unknown direction for '{key}': add it to the task's higher_is_better "
                    f"(or to the baselines YAML), or leave the metric out with `metrics=`"
                )
            change = relative_change(
                float(results[task][name]), float(baselines[task][name]), bool(direction), key
            )
            relative[task][name] = 100.0 * change
    every = [v for values in relative.values() for v in values.values()]
    task_means = {task: sum(v.values()) / len(v) for task, v in relative.items()}
    return DeltaM(
        per_metric=sum(every) / len(every),
        per_task=sum(task_means.values()) / len(task_means),
        relative=_frozen(relative),
        per_task_means=MappingProxyType(task_means),
    )


# -- results and baselines from files -----------------------------------------------------------
def nest_metrics(flat: Mapping[str, float], stage: str = "test") -> dict[str, dict[str, float]]:
    """`{"test/seg/miou": v, ...}` -> `{"seg": {"miou": v}}` for one stage.

    Keys of other stages and keys without a task part (`test/loss`, `best_val/...`) are left
    out.
    """
    prefix = stage.rstrip("/") + "/"
    nested: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        if not key.startswith(prefix):
            continue
        parts = key[len(prefix) :].split("/", 1)
        if len(parts) == 2 and all(parts):
            nested.setdefault(parts[0], {})[parts[1]] = float(value)
    return nested


def load_metrics_json(path: str | PathLike) -> dict[str, float]:
    """A run's flat `metrics.json`, from the file or from the run directory holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no metrics file at '{path}' (a run directory holds {METRICS_FILE})"
        )
    with path.open() as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"'{path}' must hold a JSON object of metric values")
    return {str(k): float(v) for k, v in data.items()}


def load_results(path: str | PathLike, stage: str = "test") -> dict[str, dict[str, float]]:
    """One run's `{task: {metric: value}}` for `stage` (e.g. the multi-task run to score)."""
    return nest_metrics(load_metrics_json(path), stage)


def load_baselines(
    paths: str | PathLike | Iterable[str | PathLike], stage: str = "test"
) -> dict[str, dict[str, float]]:
    """Baselines merged from one or more single-task runs (`metrics.json` files or run dirs).

    Each run usually gives one task; two runs giving the same task's metric with different
    values is an error (which run is the baseline would be ambiguous).
    """
    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    merged: dict[str, dict[str, float]] = {}
    origin: dict[tuple[str, str], str] = {}
    for path in paths:
        for task, values in load_results(path, stage).items():
            for name, value in values.items():
                previous = merged.setdefault(task, {}).get(name)
                if previous is not None and not (
                    previous == value or (math.isnan(previous) and math.isnan(value))
                ):
                    raise ValueError(
                        f"baseline '{task}/{name}' differs between runs: {previous} in "
                        f"'{origin[task, name]}', {value} in '{path}'"
                    )
                merged[task][name] = value
                origin.setdefault((task, name), str(path))
    if not merged:
        raise ValueError(f"no '{stage}/<task>/<metric>' values in {[str(p) for p in paths]}")
    return merged


@dataclass(frozen=True)
class BaselineTable:
    """Published baselines: `values` and `higher_is_better` as `{task: {metric: ...}}`."""

    values: Mapping[str, Mapping[str, float]]
    higher_is_better: Mapping[str, Mapping[str, bool]]
    source: str = ""


def load_baselines_yaml(path: str | PathLike) -> BaselineTable:
    """A YAML with `baselines: {task: {metric: value}}`, optional `higher_is_better` of the
    same shape and optional `source`; every direction given must name a baseline metric."""
    path = Path(path)
    data = OmegaConf.to_container(OmegaConf.load(path)) or {}
    values = data.get("baselines")
    if not isinstance(values, Mapping) or not values:
        raise ValueError(f"'{path}' needs a non-empty `baselines: {{task: {{metric: value}}}}`")
    directions = data.get("higher_is_better") or {}
    for task, names in directions.items():
        for name in names:
            if name not in values.get(task, {}):
                raise ValueError(f"'{path}': direction for '{task}/{name}' has no baseline value")
    return BaselineTable(
        values=_frozen({t: {m: float(v) for m, v in ms.items()} for t, ms in values.items()}),
        higher_is_better=_frozen(
            {t: {m: bool(v) for m, v in ms.items()} for t, ms in directions.items()}
        ),
        source=str(data.get("source", "")),
    )


def directions_from_tasks(tasks: Iterable[Any]) -> dict[str, dict[str, bool]]:
    """`{task.name: task.higher_is_better}` for `Task` objects (e.g. a module's tasks)."""
    return {task.name: dict(task.higher_is_better) for task in tasks}
