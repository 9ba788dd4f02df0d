"""Which way is better for each metric, rebuilt from the runs' task configs.

Only the `Task` objects are built (from `tasks.<name>` in each run's config, no model, no
data), so the report uses exactly the directions training and delta_m use. Unbound tasks
report their summary metrics (`dice`, `miou`, ...); a per-class name such as `dice_liver`
takes the direction of its summary metric (`dice`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from mtl.report.collect import OK, TASKS_KEY, RunRecord

Directions = dict[str, dict[str, bool]]


def task_directions(records: Iterable[RunRecord]) -> tuple[Directions, list[str]]:
    """`{task: {metric: higher_is_better}}` over all tasks the runs configure, and a note per
    task config that could not be built (its metrics then have no direction)."""
    from hydra.utils import instantiate

    directions: Directions = {}
    problems: list[str] = []
    built: set[str] = set()
    for record in sorted(records, key=lambda r: r.status != OK):
        tasks = record.config.get(TASKS_KEY)
        if not isinstance(tasks, Mapping):
            continue
        for name, task_cfg in tasks.items():
            key = json.dumps([name, task_cfg], sort_keys=True, default=str)
            if key in built or not isinstance(task_cfg, Mapping):
                continue
            built.add(key)
            try:
                task = instantiate(dict(task_cfg), name=name, _convert_="all")
                found = {str(m): bool(v) for m, v in task.higher_is_better.items()}
            except Exception as err:
                problems.append(f"task '{name}' of {record.name}: {type(err).__name__}: {err}")
                continue
            directions.setdefault(str(name), {}).update(found)
    return directions, problems


def summary_metrics(directions: Mapping[str, bool]) -> list[str]:
    """A task's summary metrics, the columns a report shows by default (not per-class)."""
    from mtl.training.delta_m_report import summary_metric_names

    return summary_metric_names(directions)


def direction_of(directions: Directions, task: str, metric: str) -> bool | None:
    """Higher-is-better of `task/metric`; `dice_liver` falls back to `dice`; per-class scores
    (`recall_malignant`, `lesion_recall_lesion`: Dice or recall of one class) are higher is
    better even where the task's class names are unknown; None if unknown."""
    from mtl.training.delta_m_report import PER_CLASS_PREFIXES

    known = directions.get(task, {})
    name = metric
    while True:
        if name in known:
            return known[name]
        if "_" not in name:
            return True if metric.startswith(PER_CLASS_PREFIXES) else None
        name = name.rsplit("_", 1)[0]


def merge(first: Directions, second: Mapping[str, Mapping[str, Any]]) -> Directions:
    """`first` with the directions only `second` knows added (e.g. a baselines YAML's)."""
    out = {task: dict(values) for task, values in first.items()}
    for task, values in second.items():
        for metric, value in values.items():
            out.setdefault(str(task), {}).setdefault(str(metric), bool(value))
    return out
