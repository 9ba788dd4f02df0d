"""Ablation specs: which runs an ablation is, declared in YAML (`experiments/ablations/`).

A spec names overrides for every run, the swept axes (one run per combination, times the
seeds), baseline runs, per-size changes and report options; `AblationSpec.plan(size)` turns
it into the Hydra multiruns to launch (`Sweep`). Format: README, "Sweeps and ablations".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SIZES = ("quick", "full")
_TOP_KEYS = {
    "description",
    "requires",
    "pending",
    "overrides",
    "axes",
    "seeds",
    "baselines",
    "sizes",
    "report",
}
_SIZE_KEYS = {"overrides", "axes", "seeds", "baselines"}
_REPORT_KEYS = {"rows", "baselines", "stage", "args"}


class SpecError(ValueError):
    """An ablation spec that cannot be run as written."""


@dataclass(frozen=True)
class Sweep:
    """One Hydra multirun of an ablation: fixed overrides x the product of the axes."""

    name: str  # "runs" for the ablation itself, "baseline_<name>" for a baseline
    job_type: str  # "train" | "baseline" (W&B job_type)
    overrides: tuple[str, ...]
    axes: dict[str, list[Any]]


@dataclass(frozen=True)
class ReportOptions:
    rows: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()  # baseline names whose sweeps are passed as --baselines
    stage: str = "test"
    args: tuple[str, ...] = ()  # anything else for `python -m mtl.report`


@dataclass(frozen=True)
class AblationSpec:
    name: str
    description: str = ""
    requires: tuple[str, ...] = ()
    pending: str | None = None
    overrides: tuple[str, ...] = ()
    axes: dict[str, list[Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    baselines: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    report: ReportOptions = ReportOptions()

    @classmethod
    def load(cls, path: str | Path) -> AblationSpec:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"no ablation spec at {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        return cls.from_dict(path.stem, raw, source=str(path))

    @classmethod
    def from_dict(cls, name: str, raw: Mapping[str, Any], source: str = "spec") -> AblationSpec:
        _check_keys(raw, _TOP_KEYS, source)
        sizes = dict(raw.get("sizes") or {})
        for size, body in sizes.items():
            if size not in SIZES:
                raise SpecError(f"{source}: unknown size '{size}'; sizes are {', '.join(SIZES)}")
            _check_keys(body or {}, _SIZE_KEYS, f"{source}: sizes.{size}")
            sizes[size] = dict(body or {})
        report = dict(raw.get("report") or {})
        _check_keys(report, _REPORT_KEYS, f"{source}: report")
        spec = cls(
            name=name,
            description=str(raw.get("description") or ""),
            requires=tuple(raw.get("requires") or ()),
            pending=raw.get("pending"),
            overrides=_strings(raw.get("overrides"), f"{source}: overrides"),
            axes=_axes(raw.get("axes"), f"{source}: axes"),
            seeds=_seeds(raw.get("seeds", [0]), f"{source}: seeds"),
            baselines=_baselines(raw.get("baselines"), f"{source}: baselines"),
            sizes=sizes,
            report=ReportOptions(
                rows=tuple(report.get("rows") or ()),
                baselines=tuple(report.get("baselines") or ()),
                stage=str(report.get("stage") or "test"),
                args=tuple(str(a) for a in report.get("args") or ()),
            ),
        )
        unknown = set(spec.report.baselines) - set(spec.baselines)
        if unknown:
            raise SpecError(f"{source}: report.baselines names unknown baselines {sorted(unknown)}")
        return spec

    def plan(self, size: str, extra: Sequence[str] = ()) -> list[Sweep]:
        """The multiruns for `size`: baselines first, then the ablation's own runs.

        `extra` overrides apply to every run; one whose key is an axis (or `seed`) replaces
        that axis, e.g. `weighting=ew,uw` runs only those two methods."""
        if size not in SIZES:
            raise SpecError(f"unknown size '{size}'; choose one of {', '.join(SIZES)}")
        body = self.sizes.get(size, {})
        where = f"{self.name}: sizes.{size}"
        fixed = [*self.overrides, *_strings(body.get("overrides"), f"{where}.overrides")]
        axes = {**self.axes, **_axes(body.get("axes"), f"{where}.axes")}
        seeds: list[Any] = list(_seeds(body.get("seeds", list(self.seeds)), f"{where}.seeds"))
        baselines = {**self.baselines, **_baselines(body.get("baselines"), f"{where}.baselines")}
        for item in extra:
            key = override_key(item)
            value = item.split("=", 1)[1] if "=" in item else None
            if key == "seed" and value is not None:
                seeds = [RawValue(value)]
            elif key in axes and value is not None:
                axes[key] = [RawValue(value)]
            else:
                fixed.append(item)
        sweeps = [
            Sweep(
                name=f"baseline_{name}",
                job_type="baseline",
                overrides=tuple(dedupe_overrides([*fixed, *own])),
                axes={"seed": seeds},
            )
            for name, own in baselines.items()
        ]
        sweeps.append(
            Sweep(
                name="runs",
                job_type="train",
                overrides=tuple(dedupe_overrides(fixed)),
                axes={**axes, "seed": seeds},
            )
        )
        return sweeps


class RawValue(str):
    """An axis value given on the command line, passed to Hydra as written (`ew,uw`)."""


def override_key(override: str) -> str:
    """`+a.b=1` -> `a.b`; `~a` -> `a`; `trainer=ddp` -> `trainer`."""
    return override.split("=", 1)[0].lstrip("+~")


def dedupe_overrides(overrides: Sequence[str]) -> list[str]:
    """Later overrides of the same key win (Hydra refuses a key given twice)."""
    by_key: dict[str, str] = {}
    for item in overrides:
        key = override_key(item)
        by_key.pop(key, None)
        by_key[key] = item
    return list(by_key.values())


def _check_keys(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SpecError(f"{where}: expected a list of overrides like `key=value`, got {value!r}")
    return tuple(str(v) for v in value)


def _axes(value: Any, where: str) -> dict[str, list[Any]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: expected `key: [values]`, got {value!r}")
    axes = {}
    for key, values in value.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}.{key}: expected a non-empty list of values, got {values!r}")
        axes[str(key)] = list(values)
    if "seed" in axes:
        raise SpecError(f"{where}: list seeds under `seeds:`, not as an axis")
    return axes


def _seeds(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"{where}: expected a non-empty list of integers, got {value!r}")
    if not all(isinstance(s, (int, RawValue)) and not isinstance(s, bool) for s in value):
        raise SpecError(f"{where}: seeds must be integers, got {value!r}")
    return tuple(value)


def _baselines(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{where}: expected `name: [overrides]`, got {value!r}")
    return {str(k): _strings(v, f"{where}.{k}") for k, v in value.items()}
