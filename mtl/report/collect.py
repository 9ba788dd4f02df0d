"""Find run directories and read each into a `RunRecord`: what ran, how it ended, its numbers.

A run directory is any folder holding `config.yaml` (written by `train.py` at start) or
`.hydra/`. Its status: `ok` with `metrics.json`, `failed` with `failure.json` (the error is
kept), `missing` with neither (still running or killed). Jobs a multirun's `multirun.yaml`
asked for that never got a folder are `missing` too, so nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

RUN_CONFIG = "config.yaml"
HYDRA_DIR = ".hydra"
METRICS_FILE = "metrics.json"
FAILURE_FILE = "failure.json"
MULTIRUN_FILE = "multirun.yaml"
CSV_LOG = "metrics.csv"
SEED_KEY = "seed"
TASKS_KEY = "tasks"
OK, FAILED, MISSING = "ok", "failed", "missing"
MAX_MESSAGE_CHARS = 300  # one readable line per failure in the report; the file has the rest
# folders that never hold runs of their own (and can be large)
SKIP_DIRS = frozenset({"report", "checkpoints", "wandb", "tensorboard", "predictions"})

History = list[dict[str, float]]


class ReportError(ValueError):
    """The runs cannot be reported as asked (no runs, a bad path, an unknown key)."""


@dataclass
class RunRecord:
    """One run from any source, in the form the report works on.

    `choices` are the config-group choices (`weighting: ew`, plus `tasks: seg,cls`);
    `overrides` the command-line overrides as `key -> value`; `metrics` the flat
    `metrics.json` (or W&B summary). `history` loads the logged curves on demand.
    """

    name: str
    status: str
    config: Mapping[str, Any] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    message: str = ""
    sweep: str = ""
    order: tuple = ()
    history: Callable[[], History] | None = field(default=None, repr=False, compare=False)

    @property
    def seed(self) -> int | None:
        value = self.config.get(SEED_KEY, self.overrides.get(SEED_KEY))
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    @property
    def tasks(self) -> list[str]:
        tasks = self.config.get(TASKS_KEY) or {}
        return list(tasks) if isinstance(tasks, Mapping) else []

    def settings(self) -> dict[str, str]:
        """Everything a row can be grouped by: group choices, then plain overrides."""
        return {**self.overrides, **self.choices}


# -- discovery --------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    return (path / RUN_CONFIG).is_file() or (path / HYDRA_DIR).is_dir()


def find_run_dirs(root: Path) -> tuple[list[Path], list[Path]]:
    """Run directories and multirun (sweep) directories at or below `root`. A run's own
    subfolders are not searched (its `wandb/` holds a `config.yaml` of its own)."""
    if is_run_dir(root):
        return [root], []
    runs, sweeps = [], []
    for current, dirs, files in os.walk(root):
        here = Path(current)
        if here != root and is_run_dir(here):
            runs.append(here)
            dirs[:] = []
            continue
        if MULTIRUN_FILE in files:
            sweeps.append(here)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
    return runs, sweeps


def _sweep_root(run_dir: Path, top: Path) -> Path | None:
    """The nearest folder from `run_dir` up to `top` that holds `multirun.yaml`."""
    for folder in (run_dir, *run_dir.parents):
        if (folder / MULTIRUN_FILE).is_file():
            return folder
        if folder == top:
            break
    return None


def collect(paths: Sequence[str | Path]) -> list[RunRecord]:
    """Records of every run below `paths` (sweep dirs, run dirs, or folders of them), plus
    the jobs each multirun expected but never started, in launch order."""
    records: list[RunRecord] = []
    seen: set[Path] = set()
    for index, raw in enumerate(paths):
        top = Path(raw).expanduser()
        if not top.is_dir():
            what = "does not exist" if not top.exists() else "is not a directory"
            raise ReportError(f"'{top}' {what}; pass a sweep or run directory")
        run_dirs, sweep_dirs = find_run_dirs(top)
        by_sweep: dict[Path, list[RunRecord]] = {}
        for run_dir in run_dirs:
            if run_dir.resolve() in seen:
                continue
            seen.add(run_dir.resolve())
            sweep = _sweep_root(run_dir, top)
            record = read_run_dir(run_dir, sweep=sweep, order=(index,))
            records.append(record)
            if sweep is not None:
                by_sweep.setdefault(sweep, []).append(record)
        for sweep in sweep_dirs:
            records.extend(not_started(sweep, by_sweep.get(sweep, []), order=(index,)))
    return sorted(records, key=lambda r: r.order)


# -- one run directory ------------------------------------------------------------------------
def read_run_dir(run_dir: Path, sweep: Path | None = None, order: tuple = ()) -> RunRecord:
    """A `RunRecord` from a run directory's files (never raises on a broken run: a run whose
    files cannot be read is reported as failed, with the reason)."""
    where = str(sweep or run_dir)
    try:
        hydra = _load_yaml(run_dir / HYDRA_DIR / "hydra.yaml").get("hydra", {})
        config = _run_config(run_dir)
        overrides = _load_yaml_list(run_dir / HYDRA_DIR / "overrides.yaml")
    except Exception as err:  # a truncated or hand-edited YAML must not stop the report
        return RunRecord(
            name=display_path(run_dir),
            status=FAILED,
            message=one_line(f"unreadable run files: {type(err).__name__}: {err}"),
            sweep=where,
            order=(*order, where, _job_order(None, run_dir)),
        )
    choices = _clean_choices(hydra.get("runtime", {}).get("choices") or {})
    if not choices and config:
        choices = choices_from_config(config)
    if config.get(TASKS_KEY) and TASKS_KEY not in choices:
        choices[TASKS_KEY] = ",".join(config[TASKS_KEY])
    job_num = hydra.get("job", {}).get("num")
    status, metrics, message = _status(run_dir)
    csv_log = find_csv_log(run_dir)
    return RunRecord(
        name=display_path(run_dir),
        status=status,
        config=config,
        choices=choices,
        overrides=parse_overrides(overrides),
        metrics=metrics,
        message=message,
        sweep=where,
        order=(*order, where, _job_order(job_num, run_dir)),
        history=(lambda: read_csv_log(csv_log)) if csv_log else None,
    )


def display_path(path: Path) -> str:
    """`path` relative to the working directory when it lies below it, else absolute."""
    absolute = path.resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def _job_order(job_num: Any, run_dir: Path) -> tuple:
    if isinstance(job_num, int):
        return (job_num, run_dir.name)
    name = run_dir.name
    return (int(name), name) if name.isdigit() else (math.inf, name)


def _status(run_dir: Path) -> tuple[str, dict[str, float], str]:
    """(status, metrics, message) from `metrics.json` / `failure.json`; the newer one wins
    when a folder holds both (a job re-run in place)."""
    metrics_path, failure_path = run_dir / METRICS_FILE, run_dir / FAILURE_FILE
    has_metrics, has_failure = metrics_path.is_file(), failure_path.is_file()
    if has_failure and (
        not has_metrics or failure_path.stat().st_mtime >= metrics_path.stat().st_mtime
    ):
        return FAILED, {}, failure_message(failure_path)
    if has_metrics:
        try:
            return OK, read_metrics(metrics_path), ""
        except (OSError, ValueError) as err:
            return FAILED, {}, f"unreadable {METRICS_FILE}: {err}"
    return MISSING, {}, f"no {METRICS_FILE} or {FAILURE_FILE}: still running, or killed"


def read_metrics(path: Path) -> dict[str, float]:
    """The numeric entries of a flat `metrics.json` (NaN kept)."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of metric values")
    return {str(k): float(v) for k, v in data.items() if _is_number(v)}


def failure_message(path: Path) -> str:
    """`ErrorType: message` from `failure.json`, on one line."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return f"unreadable {FAILURE_FILE}: {err}"
    if not isinstance(data, dict):
        return f"unreadable {FAILURE_FILE}: not a JSON object"
    kind = str(data.get("error_type") or "Error")
    return one_line(f"{kind}: {data.get('message') or ''}".rstrip(": "))


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _run_config(run_dir: Path) -> dict[str, Any]:
    """The resolved `config.yaml`, else Hydra's copy resolved where it can be (its
    `${hydra:...}` entries need a running Hydra and stay as they are)."""
    if (run_dir / RUN_CONFIG).is_file():
        return _load_yaml(run_dir / RUN_CONFIG)
    path = run_dir / HYDRA_DIR / RUN_CONFIG
    if not path.is_file():
        return {}
    cfg = OmegaConf.load(path)
    out: dict[str, Any] = {}
    for key in cfg:
        node = cfg[key]
        if not OmegaConf.is_config(node):
            out[str(key)] = _resolved_scalar(cfg, str(key))
            continue
        try:
            out[str(key)] = OmegaConf.to_container(node, resolve=True)
        except Exception:  # an interpolation only a running Hydra resolves (`${hydra:...}`)
            out[str(key)] = OmegaConf.to_container(node, resolve=False)
    return out


def _resolved_scalar(cfg: Any, key: str) -> Any:
    try:
        return cfg[key]
    except Exception:
        return OmegaConf.to_container(cfg, resolve=False)[key]


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return data if isinstance(data, dict) else {}


def _load_yaml_list(path: Path) -> list[str]:
    if not path.is_file():
        return []
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return [str(item) for item in data] if isinstance(data, list) else []


def _clean_choices(choices: Mapping[str, Any]) -> dict[str, str]:
    """Hydra's `runtime.choices` without Hydra's own groups and unset ones."""
    return {
        str(group): str(choice)
        for group, choice in choices.items()
        if choice is not None and not str(group).startswith("hydra")
    }


def parse_overrides(overrides: Iterable[str]) -> dict[str, str]:
    """`["seed=0", "+x.y=1", "~z"]` -> `{"seed": "0", "x.y": "1"}` (deletions left out)."""
    out = {}
    for item in overrides:
        if "=" not in item or item.startswith("~"):
            continue
        key, value = item.split("=", 1)
        out[key.lstrip("+")] = value
    return out


# -- group choices without Hydra's record (W&B runs, bare config.yaml) ------------------------
def conf_dir() -> Path:
    """The repository's `conf/` (this package lives in `<repo>/mtl/report/`)."""
    return Path(__file__).resolve().parents[2] / "conf"


def choices_from_config(config: Mapping[str, Any], conf: Path | None = None) -> dict[str, str]:
    """Group choices recovered from a resolved config: for each group folder of `conf/`, the
    option whose `_target_` matches and that agrees with the config on the most values."""
    conf = conf or conf_dir()
    choices: dict[str, str] = {}
    if not conf.is_dir():
        return choices
    for group_dir in sorted(p for p in conf.iterdir() if p.is_dir()):
        node = config.get(group_dir.name)
        if not isinstance(node, Mapping) or "_target_" not in node:
            continue
        best, best_score = None, -1
        for option in sorted(group_dir.glob("*.yaml")):
            values = _load_yaml(option)
            if values.get("_target_") != node["_target_"]:
                continue
            score = sum(1 for k, v in values.items() if node.get(k) == v)
            if score > best_score:
                best, best_score = option.stem, score
        choices[group_dir.name] = best or str(node["_target_"]).rsplit(".", 1)[-1]
    if isinstance(config.get(TASKS_KEY), Mapping):
        choices[TASKS_KEY] = ",".join(config[TASKS_KEY])
    return choices


# -- jobs a multirun expected -----------------------------------------------------------------
def expected_jobs(sweep: Path) -> list[list[str]] | None:
    """The override lists of every job `multirun.yaml` launches (basic sweeper only), or None
    when they cannot be expanded (another sweeper, e.g. Optuna, or an unparsable override)."""
    hydra = _load_yaml(sweep / MULTIRUN_FILE).get("hydra", {})
    sweeper = hydra.get("sweeper") or {}
    if "basic_sweeper" not in str(sweeper.get("_target_", "")):
        return None
    task = list((hydra.get("overrides") or {}).get("task") or [])
    params = sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + [str(o) for o in task]
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(arguments)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:
        return None
    return [list(job) for batch in batches for job in batch]


def not_started(sweep: Path, found: Sequence[RunRecord], order: tuple = ()) -> list[RunRecord]:
    """Jobs of `sweep` that have no run folder: `missing` records, one per job."""
    jobs = expected_jobs(sweep)
    if not jobs:
        return []
    have = {tuple(sorted(f"{k}={v}" for k, v in r.overrides.items())) for r in found}
    out = []
    for num, job in enumerate(jobs):
        overrides = parse_overrides(job)
        if tuple(sorted(f"{k}={v}" for k, v in overrides.items())) in have:
            continue
        out.append(
            RunRecord(
                name=f"{display_path(sweep)}/<job {num}>",
                status=MISSING,
                overrides=overrides,
                choices={},
                message="never started: no run folder for this job of the multirun",
                sweep=str(sweep),
                order=(*order, str(sweep), (num, "")),
            )
        )
    return out


def sweep_command(sweep: Path) -> str | None:
    """`python train.py -m <overrides>` that launches `sweep` again, from `multirun.yaml`."""
    import shlex

    hydra = _load_yaml(sweep / MULTIRUN_FILE).get("hydra", {})
    task = (hydra.get("overrides") or {}).get("task")
    if task is None:
        return None
    return " ".join(["python train.py -m", *(shlex.quote(str(o)) for o in task)]).strip()


def run_command(record: RunRecord) -> str:
    import shlex

    parts = [f"{k}={v}" for k, v in record.overrides.items()]
    return " ".join(["python train.py", *(shlex.quote(p) for p in parts)]).strip()


# -- training curves from the CSV logger ------------------------------------------------------
def find_csv_log(run_dir: Path) -> Path | None:
    """The CSV logger's `metrics.csv` in a run folder (`csv/metrics.csv` by default)."""
    candidates = sorted(run_dir.rglob(CSV_LOG), key=lambda p: (len(p.parts), str(p)))
    return candidates[0] if candidates else None


def read_csv_log(path: Path) -> History:
    """Rows of the CSV log as `{column: value}` with the empty cells left out."""
    rows: History = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            values = {}
            for key, text in row.items():
                if key is None or text in (None, ""):
                    continue
                try:
                    values[key] = float(text)
                except ValueError:
                    continue
            if values:
                rows.append(values)
    return rows
