"""Group runs into rows, aggregate seeds (mean ± sample std) and score delta_m.

Rows are keyed by config-group choices (or plain overrides) that vary across the runs,
seeds excepted. Every run gets its own delta_m (both published forms, `mtl.metrics.delta_m`)
against the mean of the single-task (STL) baseline seeds; a row shows the mean ± std of its
runs' values, so the spread over seeds is visible for delta_m too.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mtl.metrics import BaselineTable, delta_m, nest_metrics
from mtl.metrics.delta_m import NOT_SCORES
from mtl.report.collect import (
    MISSING,
    OK,
    SEED_KEY,
    TASKS_KEY,
    ReportError,
    RunRecord,
    run_command,
    sweep_command,
)
from mtl.report.directions import (
    Directions,
    direction_of,
    merge,
    summary_metrics,
    task_directions,
)
from mtl.training.delta_m_report import PER_CLASS_PREFIXES

MODEL_KEY = "model"
BASELINE_MODEL = "stl"  # `model=stl`: one run trains every task's single-task baseline
BASELINE_TARGET_SUFFIX = "SingleTaskNets"
BASELINE_LABEL = "STL"
OTHER_STL_KEY = "<other STL runs>"  # STL runs in the paths when --baselines names others
# keys that never tell methods apart (bookkeeping), as a key or a dotted prefix
NOT_ROW_KEYS: tuple[str, ...] = (
    SEED_KEY,
    "hydra",
    "paths",
    "extras",
    "logger",
    "local",
    "debug",
    "task_name",
    "tags",
    "group",
    "job_type",
    "skip_finished",
    "ckpt_path",
)
# rows when nothing varies: the architecture and the weighting
FALLBACK_ROW_KEYS: tuple[str, ...] = (MODEL_KEY, "weighting")
# keys a run is never matched to its baseline on: seeds are averaged, tasks are matched per
# task, and the model is what differs from the baseline by definition
NOT_MATCH_KEYS: tuple[str, ...] = (SEED_KEY, TASKS_KEY, MODEL_KEY)
# keys STL runs set for themselves (e.g. one run per task, each monitoring its own metric)
BASELINE_OWN_KEYS: tuple[str, ...] = ("optimized_metric", "optimized_mode")
DELTA_FORMS: tuple[str, ...] = ("per_metric", "per_task")
DELTA_PREFIX = "delta_m"
NO_VALUE = "-"
STD_DDOF = 1  # sample standard deviation over seeds


@dataclass(frozen=True)
class Stat:
    """Mean, sample std (ddof=1; NaN for one value) and count of the finite values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return cls(math.nan, math.nan, 0)
        std = statistics.stdev(finite) if len(finite) > STD_DDOF else math.nan
        return cls(statistics.fmean(finite), std, len(finite))


@dataclass(frozen=True)
class Column:
    """One table column: `key` is `task/metric`, a flat metrics key, or `delta_m/<form>`."""

    key: str
    kind: str  # "metric" | "extra" | "delta"
    higher_is_better: bool | None = None

    @property
    def task(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def metric(self) -> str:
        return self.key.split("/", 1)[-1]


@dataclass
class Row:
    label: str
    key: tuple[tuple[str, str], ...]
    runs: list[RunRecord]
    baseline: bool = False
    cells: dict[str, Stat] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


@dataclass
class Excluded:
    record: RunRecord
    status: str
    reason: str


@dataclass
class Report:
    """Everything the tables, the CSV and the plots show."""

    stage: str
    columns: list[Column]
    rows: list[Row]
    row_keys: list[str]
    records: list[RunRecord]
    excluded: list[Excluded]
    values: dict[str, dict[str, float]]  # record name -> column key -> value
    row_of: dict[str, str]  # record name -> row label
    baseline_runs: list[RunRecord]
    baseline_source: str
    match_keys: list[str]
    delta_metrics: dict[str, list[str]]
    checkpoint_rule: str
    commands: list[str]
    notes: list[str]

    @property
    def metric_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind != "delta"]

    @property
    def delta_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "delta"]

    @property
    def seeds(self) -> list[int]:
        return sorted({s for row in self.rows for s in row.seeds if s is not None})


# -- which runs are baselines, which keys make rows --------------------------------------------
def is_baseline(record: RunRecord) -> bool:
    """An STL run: `model=stl`, or a config whose model is `SingleTaskNets`."""
    if MODEL_KEY in record.choices:
        return record.choices[MODEL_KEY] == BASELINE_MODEL
    model = record.config.get(MODEL_KEY)
    target = str(model.get("_target_", "")) if isinstance(model, Mapping) else ""
    return target.endswith(BASELINE_TARGET_SUFFIX)


def _bookkeeping(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NOT_ROW_KEYS)


def varying_keys(records: Sequence[RunRecord], exclude: Iterable[str] = ()) -> list[str]:
    """Keys whose value differs between records (absent counts as a value), in first-seen
    order, without bookkeeping keys and `exclude`."""
    skip = set(exclude)
    order: list[str] = []
    for record in records:
        order.extend(k for k in record.settings() if k not in order)
    return [
        key
        for key in order
        if key not in skip
        and not _bookkeeping(key)
        and len({r.settings().get(key) for r in records}) > 1
    ]


def default_row_keys(records: Sequence[RunRecord]) -> list[str]:
    keys = varying_keys(records)
    if keys:
        return keys
    present = {k for r in records for k in r.settings()}
    return [k for k in FALLBACK_ROW_KEYS if k in present] or [MODEL_KEY]


def _row_key(record: RunRecord, keys: Sequence[str]) -> tuple[tuple[str, str], ...]:
    values = record.settings()
    return tuple((k, values.get(k, NO_VALUE)) for k in keys)


def _label(key: tuple[tuple[str, str], ...]) -> str:
    return " / ".join(value for _, value in key) or NO_VALUE


# -- columns --------------------------------------------------------------------------------
def _task_order(records: Iterable[RunRecord]) -> list[str]:
    order: list[str] = []
    for record in records:
        order.extend(t for t in record.tasks if t not in order)
    return order


def _available(records: Iterable[RunRecord], stage: str) -> dict[str, list[str]]:
    """`{task: [metric, ...]}` with a finite value at `stage` in at least one run."""
    out: dict[str, list[str]] = {}
    for record in records:
        for task, values in nest_metrics(record.metrics, stage).items():
            names = out.setdefault(task, [])
            names.extend(m for m, v in values.items() if math.isfinite(v) and m not in names)
    return out


def choose_columns(
    records: Sequence[RunRecord],
    stage: str,
    directions: Directions,
    metrics: Sequence[str] | None = None,
    extra: Sequence[str] = (),
) -> list[Column]:
    """The metric columns: `metrics` (`task/metric`) if given, else each task's summary
    metrics that some run has at `stage`; then `extra` flat keys; then the delta_m forms."""
    available = _available(records, stage)
    columns: list[Column] = []
    if metrics:
        for key in metrics:
            task, _, name = key.partition("/")
            if not name or name not in available.get(task, []):
                have = [f"{t}/{m}" for t, names in available.items() for m in names]
                raise ReportError(f"no run has '{stage}/{key}'; available: {have}")
            columns.append(Column(key, "metric", direction_of(directions, task, name)))
    else:
        for task in _task_order(records):
            have = available.get(task, [])
            if task in directions:
                names = [m for m in summary_metrics(directions[task]) if m in have]
            else:
                names = [m for m in have if m not in NOT_SCORES]
                names = [m for m in names if not m.startswith(PER_CLASS_PREFIXES)]
            columns.extend(
                Column(f"{task}/{m}", "metric", direction_of(directions, task, m)) for m in names
            )
    flat = {k for r in records for k in r.metrics}
    for key in extra:
        if key not in flat:
            raise ReportError(f"no run has '{key}' in its metrics; e.g. model/params/total")
        columns.append(Column(key, "extra"))
    columns.extend(Column(f"{DELTA_PREFIX}/{form}", "delta", False) for form in DELTA_FORMS)
    return columns


# -- delta_m ------------------------------------------------------------------------------------
def _mean_baseline(runs: Sequence[RunRecord], stage: str) -> dict[str, dict[str, float]]:
    """`{task: {metric: mean over runs}}` of the baseline runs' finite values."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for task, values in nest_metrics(run.metrics, stage).items():
            for name, value in values.items():
                if math.isfinite(value):
                    pooled.setdefault(task, {}).setdefault(name, []).append(value)
    return {t: {m: statistics.fmean(v) for m, v in ms.items()} for t, ms in pooled.items()}


def run_delta_m(
    record: RunRecord,
    stage: str,
    columns: Sequence[Column],
    baseline: Mapping[str, Mapping[str, float]],
    directions: Directions,
) -> tuple[dict[str, float], dict[str, list[str]], str]:
    """Both delta_m forms of one run over the metric columns of its tasks, the metrics used,
    and why it is NaN if it is (a task without baseline, a non-finite value)."""
    nan = {f"{DELTA_PREFIX}/{form}": math.nan for form in DELTA_FORMS}
    results = nest_metrics(record.metrics, stage)
    tasks = record.tasks or list(results)
    names: dict[str, list[str]] = {}
    for task in tasks:
        chosen = [
            c.metric
            for c in columns
            if c.kind == "metric"
            and c.task == task
            and c.higher_is_better is not None
            and math.isfinite(baseline.get(task, {}).get(c.metric, math.nan))
        ]
        if not chosen:
            return nan, {}, f"no baseline value for task '{task}'"
        names[task] = chosen
    if not names:
        return nan, {}, "no task to compare"
    dirs = {t: {m: bool(direction_of(directions, t, m)) for m in ms} for t, ms in names.items()}
    try:
        result = delta_m(results, baseline, dirs, metrics=names)
    except ValueError as err:
        return nan, {}, str(err)
    return {f"{DELTA_PREFIX}/{f}": getattr(result, f) for f in DELTA_FORMS}, names, ""


# -- the header's statements ----------------------------------------------------------------------
def checkpoint_rule(stage: str, records: Sequence[RunRecord]) -> str:
    """How the weights behind the numbers were chosen, in words, from the stage and configs."""
    if stage == "test":
        monitors: dict[str, int] = {}
        for r in records:
            cfg = r.config
            monitor = f"{cfg.get('optimized_metric', '?')} ({cfg.get('optimized_mode', '?')})"
            monitors[monitor] = monitors.get(monitor, 0) + 1
        by = ", ".join(f"{m} for {n} run{'s' * (n != 1)}" for m, n in monitors.items())
        return (
            "test split, evaluated with the best-validation checkpoint "
            f"(selected by {by}); the test set never chooses the checkpoint"
        )
    if stage.startswith("test_last"):
        count = stage.removeprefix("test_last")
        return (
            f"test split, mean of the test values of the last {count} epochs' weights "
            "(MTAN / Nash-MTL protocol; no checkpoint selection)"
        )
    return f"values logged at stage `{stage}`"


def reproduce_commands(records: Sequence[RunRecord]) -> list[str]:
    """One `train.py -m` command per multirun (from `multirun.yaml`), one per single run."""
    commands: list[str] = []
    for record in records:
        sweep = Path(record.sweep) if record.sweep else None
        command = sweep_command(sweep) if sweep and sweep.is_dir() else None
        if command is None and record.overrides and not record.name.endswith(">"):
            command = run_command(record)
        if command and command not in commands:
            commands.append(command)
    return commands


# -- the report -----------------------------------------------------------------------------------
def build_report(
    records: Sequence[RunRecord],
    stage: str = "test",
    rows: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    extra: Sequence[str] = (),
    baseline_runs: Sequence[RunRecord] | None = None,
    baseline_table: BaselineTable | None = None,
    baseline_source: str = "",
) -> Report:
    """Aggregate `records` at `stage` (`test` or `test_last<N>`).

    The reference for delta_m: `baseline_table` (published numbers) if given, else
    `baseline_runs` (e.g. from `--baselines`), else the `model=stl` runs among `records`.
    STL runs are shown as rows of their own in every case.
    """
    if not records:
        raise ReportError("no runs found")
    usable, excluded = _usable(records, stage)
    external, external_excluded = _usable(baseline_runs or [], stage)
    excluded += external_excluded
    external_names = {r.name for r in external}
    sweep_stl = [r for r in usable if is_baseline(r) and r.name not in external_names]
    main = [r for r in usable if not is_baseline(r)]
    if baseline_table is not None:
        reference: list[RunRecord] = []
    else:
        reference = external if baseline_runs is not None else sweep_stl
    stl_rows_runs = [*external, *sweep_stl]
    if not main and not stl_rows_runs:
        raise ReportError(_nothing_usable(records, stage))

    notes: list[str] = []
    directions, problems = task_directions([*records, *(baseline_runs or [])])
    notes.extend(f"could not build {p}; its metrics have no direction" for p in problems)
    if baseline_table is not None:
        directions = merge(directions, baseline_table.higher_is_better)
    columns = choose_columns([*main, *stl_rows_runs], stage, directions, metrics, extra)
    notes.extend(
        f"no direction known for '{c.key}': no arrow, no bold, not in delta_m"
        for c in columns
        if c.kind == "metric" and c.higher_is_better is None
    )

    row_keys = list(rows) if rows else default_row_keys(main or stl_rows_runs)
    known = {k for r in [*records, *external] for k in r.settings()}
    unknown = [k for k in row_keys if k not in known]
    if unknown:
        raise ReportError(f"--rows {unknown} not found; runs have the keys {sorted(known)}")
    match_keys = [k for k in row_keys if k not in NOT_MATCH_KEYS and k in varying_keys(reference)]
    all_rows = _stl_rows(stl_rows_runs, reference, match_keys) + _group(main, row_keys)

    if baseline_table is not None:
        reference_of = lambda record: {t: dict(v) for t, v in baseline_table.values.items()}  # noqa: E731
    else:

        def reference_of(record: RunRecord) -> dict[str, dict[str, float]]:
            wanted = _row_key(record, match_keys)
            return _mean_baseline(
                [r for r in reference if _row_key(r, match_keys) == wanted], stage
            )

    values, delta_used, unavailable = _score(all_rows, columns, stage, directions, reference_of)
    if reference or baseline_table is not None:
        notes.extend(
            f"delta_m not available for {len(names)} run(s) ({', '.join(names)}): {why}"
            for why, names in unavailable.items()
        )
    else:
        notes.append(
            "no STL baseline runs (model=stl) found: delta_m is not available; "
            "add them to the sweep or pass --baselines"
        )
    notes.extend(_row_notes(all_rows, row_keys))
    notes.extend(_baseline_mismatch(main, reference, row_keys))
    notes.extend(_missing_cells(all_rows, columns))

    if baseline_table is not None:
        source = baseline_source or baseline_table.source or "published baselines"
    else:
        source = baseline_source or ", ".join(r.name for r in reference)
    return Report(
        stage=stage,
        columns=columns,
        rows=all_rows,
        row_keys=row_keys,
        records=[*records, *(r for r in baseline_runs or [] if r not in records)],
        excluded=excluded,
        values=values,
        row_of={r.name: row.label for row in all_rows for r in row.runs},
        baseline_runs=reference,
        baseline_source=source,
        match_keys=match_keys,
        delta_metrics=delta_used,
        checkpoint_rule=checkpoint_rule(stage, [r for row in all_rows for r in row.runs]),
        commands=reproduce_commands([*records, *(baseline_runs or [])]),
        notes=notes,
    )


def _usable(records: Iterable[RunRecord], stage: str) -> tuple[list[RunRecord], list[Excluded]]:
    """Finished runs with values at `stage`, and the others with the reason."""
    usable, excluded = [], []
    for record in records:
        if record.status != OK:
            excluded.append(Excluded(record, record.status, record.message))
        elif not nest_metrics(record.metrics, stage):
            reason = f"finished, but has no '{stage}/<task>/<metric>' value"
            excluded.append(Excluded(record, MISSING, reason))
        else:
            usable.append(record)
    return usable, excluded


def _group(runs: Sequence[RunRecord], row_keys: Sequence[str]) -> list[Row]:
    grouped: dict[tuple, Row] = {}
    for record in runs:
        key = _row_key(record, row_keys)
        grouped.setdefault(key, Row(_label(key), key, [])).runs.append(record)
    return list(grouped.values())


def _stl_rows(
    runs: Sequence[RunRecord], reference: Sequence[RunRecord], match_keys: Sequence[str]
) -> list[Row]:
    """STL rows: the reference runs grouped by the keys they are matched on; STL runs that
    are not the reference (when `--baselines` names others) in a row of their own."""
    grouped: dict[tuple, Row] = {}
    names = {r.name for r in reference}
    for record in runs:
        if reference and record.name not in names:
            key: tuple = ((OTHER_STL_KEY, ""),)
            label = f"{BASELINE_LABEL} (not the reference)"
        else:
            key = _row_key(record, match_keys)
            label = BASELINE_LABEL + (f" ({_label(key)})" if key else "")
        grouped.setdefault(key, Row(label, key, [], baseline=True)).runs.append(record)
    return list(grouped.values())


def _score(
    rows: Sequence[Row],
    columns: Sequence[Column],
    stage: str,
    directions: Directions,
    reference_of: Callable[[RunRecord], Mapping[str, Mapping[str, float]]],
) -> tuple[dict[str, dict[str, float]], dict[str, list[str]], dict[str, list[str]]]:
    """Each run's column values and delta_m; the metrics delta_m used; why some have none.
    Fills each row's cells (mean ± std over its runs)."""
    values: dict[str, dict[str, float]] = {}
    used_by_task: dict[str, list[str]] = {}
    unavailable: dict[str, list[str]] = {}
    for row in rows:
        for record in row.runs:
            flat = {c.key: _value(record, stage, c) for c in columns if c.kind != "delta"}
            delta, used, why = run_delta_m(record, stage, columns, reference_of(record), directions)
            if why:
                unavailable.setdefault(why, []).append(record.name)
            for task, names in used.items():
                have = used_by_task.setdefault(task, [])
                have.extend(m for m in names if m not in have)
            values[record.name] = {**flat, **delta}
        row.cells = {c.key: Stat.of(values[r.name][c.key] for r in row.runs) for c in columns}
    return values, used_by_task, unavailable


def _value(record: RunRecord, stage: str, column: Column) -> float:
    key = f"{stage}/{column.key}" if column.kind == "metric" else column.key
    return float(record.metrics.get(key, math.nan))


def _nothing_usable(records: Sequence[RunRecord], stage: str) -> str:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    return (
        f"no finished run has '{stage}/...' values ({len(records)} runs: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + ")"
    )


def _row_notes(rows: Sequence[Row], row_keys: Sequence[str]) -> list[str]:
    """Rows that mix configurations or repeat a seed: the mean would hide it."""
    notes = []
    for row in rows:
        # baseline rows may mix by design (one STL run per task, each with its own monitor)
        mixed = [] if row.baseline else varying_keys(row.runs, exclude=row_keys)
        if mixed:
            notes.append(
                f"row '{row.label}' mixes runs that differ in {mixed}; "
                "add them to --rows to split it"
            )
        seeds = [s for s in row.seeds if s is not None]
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated and not row.baseline:
            notes.append(f"row '{row.label}' has seed(s) {repeated} more than once")
    counts = {row.n for row in rows if not row.baseline}
    if len(counts) > 1:
        notes.append(f"rows have different numbers of seeds: n in {sorted(counts)}")
    return notes


def _baseline_mismatch(
    runs: Sequence[RunRecord], baselines: Sequence[RunRecord], row_keys: Sequence[str]
) -> list[str]:
    """Settings that differ between the baselines and the runs they score (other data, image
    size or epochs make delta_m meaningless), rows and per-run choices aside."""
    if not runs or not baselines:
        return []
    skip = {*row_keys, *NOT_MATCH_KEYS, *BASELINE_OWN_KEYS}
    differences = []
    for key in varying_keys([*runs, *baselines], exclude=skip):
        theirs = sorted({str(r.settings().get(key, NO_VALUE)) for r in baselines})
        ours = sorted({str(r.settings().get(key, NO_VALUE)) for r in runs})
        if ours != theirs:
            differences.append(f"{key} ({','.join(theirs)} vs {','.join(ours)})")
    if not differences:
        return []
    return [
        "the STL baselines differ from the runs they score in "
        + "; ".join(differences)
        + ": delta_m then compares unlike settings"
    ]


def _missing_cells(rows: Sequence[Row], columns: Sequence[Column]) -> list[str]:
    notes = []
    for row in rows:
        for column in columns:
            stat = row.cells[column.key]
            if 0 < stat.n < row.n and column.kind != "delta":
                notes.append(
                    f"'{column.key}' of row '{row.label}' averages {stat.n} of {row.n} runs"
                )
    return notes


def best_rows(report: Report, column: Column, decimals: int) -> set[str]:
    """Labels of the rows with the best mean in `column` (ties at the shown precision all
    count); among the non-baseline rows when there are any, and only if two have a value."""
    if column.higher_is_better is None:
        return set()
    rows = [r for r in report.rows if not r.baseline] or report.rows
    means = {
        r.label: round(r.cells[column.key].mean, decimals)
        for r in rows
        if math.isfinite(r.cells[column.key].mean)
    }
    if len(means) < 2:  # nothing to compare with
        return set()
    best = max(means.values()) if column.higher_is_better else min(means.values())
    return {label for label, mean in means.items() if mean == best}
