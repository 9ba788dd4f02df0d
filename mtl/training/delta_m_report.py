"""delta_m of a finished run against single-task baselines, as `train.py` reports it.

`delta_m.baselines` names STL runs of this framework (run dirs or `metrics.json` files; e.g.
the one `model=stl` run that trains every task's baseline) or a YAML of published numbers
(`conf/baselines/*.yaml`). The run's test metrics come from its best *validation*
checkpoint; both published forms are reported.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from mtl.metrics import (
    delta_m,
    directions_from_tasks,
    load_baselines,
    load_baselines_yaml,
    nest_metrics,
)

log = logging.getLogger(__name__)

# metric names of one class each (segmentation's `dice_<class>` and `lesion_recall_<class>`,
# classification's `recall_<class>`), left out of summaries
PER_CLASS_PREFIXES: tuple[str, ...] = ("dice_", "lesion_recall_", "recall_")


def summary_metric_names(higher_is_better: Mapping[str, bool]) -> list[str]:
    """A task's summary metrics: those in its `higher_is_better` without a per-class suffix
    (`miou`, `pixel_acc`, not `dice_liver`); what delta_m and reports count by default."""
    return [m for m in higher_is_better if not m.startswith(PER_CLASS_PREFIXES)]


def delta_m_metrics(
    metrics: Mapping[str, float],
    tasks: Sequence,
    baselines: str | Sequence[str],
    names: Mapping[str, Sequence[str]] | None = None,
    stage: str = "test",
) -> dict[str, float]:
    """`{stage}/delta_m/per_metric` and `per_task` (percent, lower is better).

    By default each task's summary metrics count (those in its `higher_is_better` without a
    per-class suffix, e.g. `miou` and `pixel_acc`, not `dice_liver`), where both the run and
    the baseline have a finite value.
    """
    paths = [baselines] if isinstance(baselines, str) else list(baselines)
    directions = directions_from_tasks(tasks)
    if len(paths) == 1 and Path(paths[0]).suffix in (".yaml", ".yml"):
        table = load_baselines_yaml(paths[0])
        base = {t: dict(v) for t, v in table.values.items()}
        source = f"{paths[0]} ({table.source})" if table.source else paths[0]
    else:
        base = load_baselines(paths, stage)
        source = ", ".join(paths)
    results = nest_metrics(metrics, stage)
    if names is None:
        names = {}
        for task in tasks:
            have, ref = results.get(task.name, {}), base.get(task.name, {})
            chosen = [
                m
                for m in summary_metric_names(task.higher_is_better)
                if math.isfinite(have.get(m, math.nan)) and math.isfinite(ref.get(m, math.nan))
            ]
            if not chosen:
                raise ValueError(
                    f"delta_m: no metric of task '{task.name}' is in both this run and the "
                    f"baselines ({source}); run its single-task baseline (model=stl) or drop it"
                )
            names[task.name] = chosen
    result = delta_m(results, base, directions, metrics=names)
    log.info(
        "delta_m vs %s over %s: %+.2f (per metric), %+.2f (per task)",
        source,
        {t: list(v) for t, v in names.items()},
        result.per_metric,
        result.per_task,
    )
    out = {
        f"{stage}/delta_m/per_metric": result.per_metric,
        f"{stage}/delta_m/per_task": result.per_task,
    }
    for task, values in result.relative.items():
        for name, value in values.items():
            out[f"{stage}/delta_m/{task}/{name}"] = value
    return out
