"""PNG plots of a report: one bar chart per column (mean, std error bars, one bar per row)
and training curves per row (mean over seeds, ± std band) from the logged histories."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from mtl.report.aggregate import STD_DDOF, Column, Report, Row
from mtl.report.collect import History
from mtl.report.tables import ARROWS, column_title, row_title

DPI = 120
BAR_WIDTH_INCHES = 0.7
MIN_WIDTH_INCHES = 4.0
HEIGHT_INCHES = 3.6
CURVE_SIZE_INCHES = (6.4, 4.0)
BAND_ALPHA = 0.2
BASELINE_HATCH = "//"
# x axes to try, in order: the CSV logger's epoch, W&B's epoch, then steps
X_KEYS: tuple[str, ...] = ("epoch", "trainer/epoch", "step", "_step")
TRAIN_LOSS_KEYS: tuple[str, ...] = ("train/loss_epoch", "train/loss")
VAL_STAGE = "val"


def safe_name(key: str) -> str:
    """A metric key as a file-name part: `seg/within_11.25` -> `seg_within_11.25`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")


def bar_charts(report: Report, out: Path) -> list[Path]:
    """`bars_<column>.png` for every column with a value."""
    written = []
    for column in report.columns:
        rows = [r for r in report.rows if r.cells[column.key].n > 0]
        if not rows:
            continue
        path = out / f"bars_{safe_name(column.key)}.png"
        _bar_chart(report, column, rows, path)
        written.append(path)
    return written


def _bar_chart(report: Report, column: Column, rows: Sequence[Row], path: Path) -> None:
    width = max(MIN_WIDTH_INCHES, BAR_WIDTH_INCHES * len(rows) + 1.5)
    fig, ax = plt.subplots(figsize=(width, HEIGHT_INCHES))
    means = [r.cells[column.key].mean for r in rows]
    errors = [_zero_nan(r.cells[column.key].std) for r in rows]
    bars = ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color="tab:blue")
    for bar, row in zip(bars, rows, strict=True):
        if row.baseline:
            bar.set_facecolor("tab:gray")
            bar.set_edgecolor("black")  # hatches are drawn in the edge colour
            bar.set_hatch(BASELINE_HATCH)
    ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right")
    ax.set_xlabel(row_title(report))
    ax.set_ylabel(column_title(column, ARROWS))
    if column.kind == "delta":
        ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_title(
        f"{column_title(column, ARROWS)}\n{report.stage}: mean ± std (ddof={STD_DDOF}) over seeds",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _zero_nan(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def curve_keys(report: Report) -> list[str]:
    """The logged series to draw: validation values of the metric columns, the train loss."""
    keys = [f"{VAL_STAGE}/{c.key}" for c in report.columns if c.kind == "metric"]
    return [*TRAIN_LOSS_KEYS, *keys]


def series(history: History, key: str) -> tuple[str, dict[float, float]]:
    """(x name, `{x: value}`) of one logged key, the last value per x; x is the epoch when
    it is logged beside the key, else the step."""
    x_key = next((k for k in X_KEYS if any(k in row and key in row for row in history)), "")
    out: dict[float, float] = {}
    for row in history:
        if x_key and key in row and x_key in row and math.isfinite(row[key]):
            out[row[x_key]] = row[key]
    return x_key, out


def training_curves(report: Report, out: Path) -> tuple[list[Path], list[str]]:
    """`curves_<key>.png` per logged key, one line per row; and notes on unreadable logs."""
    histories: dict[str, History] = {}
    notes: list[str] = []
    for row in report.rows:
        for run in row.runs:
            if run.history is None:
                continue
            try:
                histories[run.name] = run.history()
            except Exception as err:  # a truncated log must not stop the report
                notes.append(f"could not read the training log of {run.name}: {err}")
    written = []
    drawn_loss = False
    for key in curve_keys(report):
        if key in TRAIN_LOSS_KEYS and drawn_loss:
            continue
        x_name, lines = _row_lines(report.rows, histories, key)
        if not lines:
            continue
        drawn_loss = drawn_loss or key in TRAIN_LOSS_KEYS
        name = "train/loss" if key in TRAIN_LOSS_KEYS else key
        path = out / f"curves_{safe_name(name)}.png"
        _curve_plot(lines, name, x_name, path)
        written.append(path)
    return written, notes


Line = tuple[str, list[float], list[float], list[float]]


def _row_lines(
    rows: Sequence[Row], histories: dict[str, History], key: str
) -> tuple[str, list[Line]]:
    """The x name and (label, x, mean, std) per row over the row's runs that logged `key`."""
    lines = []
    x_names = []
    for row in rows:
        found = [series(histories[r.name], key) for r in row.runs if r.name in histories]
        x_names.extend(x for x, s in found if s)
        per_run = [s for _, s in found if s]
        if not per_run:
            continue
        xs = sorted({x for s in per_run for x in s})
        means, stds = [], []
        for x in xs:
            values = [s[x] for s in per_run if x in s]
            means.append(statistics.fmean(values))
            stds.append(statistics.stdev(values) if len(values) > STD_DDOF else 0.0)
        label = f"{row.label} (n={len(per_run)})"
        lines.append((label, xs, means, stds))
    return (x_names[0] if x_names else ""), lines


def _curve_plot(lines: Sequence[Line], key: str, x_name: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=CURVE_SIZE_INCHES)
    for label, xs, means, stds in lines:
        (line,) = ax.plot(xs, means, marker="o", markersize=3, label=label)
        low = [m - s for m, s in zip(means, stds, strict=True)]
        high = [m + s for m, s in zip(means, stds, strict=True)]
        ax.fill_between(xs, low, high, color=line.get_color(), alpha=BAND_ALPHA)
    ax.set_xlabel(x_name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(key)
    ax.set_title(f"{key}: mean over seeds, ± std band", fontsize="medium")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
