"""The report as text: a Markdown document, a LaTeX (booktabs) table and a CSV of every run.

Cells are `mean ± std` over a row's seeds (std with ddof=1, left out for one seed); a cell
averaging fewer runs than its row has says `(n=k)`. The best mean per column (by its
direction, at the shown precision, among non-baseline rows) is bold.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from mtl.report.aggregate import (
    BASELINE_LABEL,
    STD_DDOF,
    Column,
    Report,
    Row,
    Stat,
    best_rows,
)

DEFAULT_DIGITS = 3
DELTA_DIGITS = 2
EXTRA_SIG_DIGITS = 4
THOUSANDS = 1000  # extra columns this large (parameter counts) print as whole numbers
EMPTY = "–"
ARROWS = {True: "↑", False: "↓", None: ""}
LATEX_ARROWS = {True: r"$\uparrow$", False: r"$\downarrow$", None: ""}
LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
DELTA_NAMES = {"per_metric": "per metric", "per_task": "per task"}


# -- numbers ---------------------------------------------------------------------------------
def decimals_of(column: Column, digits: int) -> int:
    return DELTA_DIGITS if column.kind == "delta" else digits


def format_number(value: float, column: Column, digits: int, signed: bool = False) -> str:
    if not math.isfinite(value):
        return EMPTY
    if column.kind == "extra":
        return f"{value:,.0f}" if abs(value) >= THOUSANDS else f"{value:.{EXTRA_SIG_DIGITS}g}"
    sign = "+" if signed else ""
    return f"{value:{sign}.{decimals_of(column, digits)}f}"


def cell_parts(stat: Stat, row: Row, column: Column, digits: int) -> tuple[str, str, str]:
    """(mean, std or '', count note or '') of one cell, as text."""
    if stat.n == 0:
        return EMPTY, "", ""
    mean = format_number(stat.mean, column, digits, signed=column.kind == "delta")
    std = format_number(stat.std, column, digits) if stat.n > STD_DDOF else ""
    count = f"(n={stat.n})" if stat.n < row.n else ""
    return mean, std, count


def column_title(column: Column, arrows: dict) -> str:
    if column.kind == "delta":
        name = f"Δm {DELTA_NAMES.get(column.metric, column.metric)} (%)"
    else:
        name = column.key
    arrow = arrows[column.higher_is_better]
    return f"{name} {arrow}".rstrip()


def row_title(report: Report) -> str:
    return " / ".join(report.row_keys) or "run"


# -- statements above the table ----------------------------------------------------------------
def statements(report: Report) -> list[tuple[str, str]]:
    """(what, text) pairs the header states: checkpoint rule, seeds, rows, delta_m,
    baselines, commands. Plain text; the renderers format it."""
    seeds = report.seeds
    counts = sorted({row.n for row in report.rows})
    n_text = "/".join(str(n) for n in counts)
    seeds_text = (
        f"mean ± sample std (ddof={STD_DDOF}) over seeds; n = {n_text} run(s) per row; "
        f"seeds {', '.join(map(str, seeds)) if seeds else 'not recorded'}"
    )
    delta_over = ", ".join(f"{t}/{m}" for t, ms in report.delta_metrics.items() for m in ms)
    delta_text = (
        "percent, lower is better; per metric = 100 · mean over metrics of "
        "(-1)^s (M - B) / B (Nash-MTL, FAMO), per task = mean over tasks of the within-task "
        "mean (LibMTL), s = 1 where higher is better; "
        f"over {delta_over or 'no metric'}; each run against the mean of its baseline "
        "seeds, then mean ± std over the row's runs"
    )
    if report.baseline_runs:
        runs = ", ".join(f"{r.name} (seed {r.seed})" for r in report.baseline_runs)
        base_text = f"{len(report.baseline_runs)} STL run(s): {runs}"
        if report.match_keys:
            base_text += f"; each run compared with the STL runs of its {report.match_keys}"
    elif report.baseline_source:
        base_text = report.baseline_source
    else:
        base_text = "none found (delta_m not available)"
    items = [
        ("Checkpoint", report.checkpoint_rule),
        ("Seeds", seeds_text),
        (
            "Rows",
            f"grouped by {', '.join(report.row_keys)}; best mean per column in bold "
            f"(among the non-{BASELINE_LABEL} rows)",
        ),
        ("delta_m", delta_text),
        ("Baselines", base_text),
    ]
    items.extend(("Reproduce", command) for command in report.commands)
    return items


# -- Markdown --------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def markdown_table(report: Report, digits: int = DEFAULT_DIGITS) -> str:
    """The table alone, one line per row."""
    columns = report.columns
    best = {c.key: best_rows(report, c, decimals_of(c, digits)) for c in columns}
    head = [row_title(report), "n", *(column_title(c, ARROWS) for c in columns)]
    lines = [
        "| " + " | ".join(_md_escape(h) for h in head) + " |",
        "|" + "|".join([":---", "---:", *("---:" for _ in columns)]) + "|",
    ]
    for row in report.rows:
        cells = [_md_escape(row.label), str(row.n)]
        for column in columns:
            mean, std, count = cell_parts(row.cells[column.key], row, column, digits)
            text = f"{mean} ± {std}" if std else mean
            if row.label in best[column.key]:
                text = f"**{text}**"
            cells.append(f"{text} {count}".rstrip())
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_document(report: Report, digits: int = DEFAULT_DIGITS, title: str = "") -> str:
    """`table.md`: the statements, the table, the runs left out and the notes."""
    parts = [f"# {title or 'MTL report'}", ""]
    for what, text in statements(report):
        shown = f"`{text}`" if what == "Reproduce" else text
        parts.append(f"- **{what}**: {shown}")
    parts += ["", markdown_table(report, digits), ""]
    parts.append("↑ higher is better, ↓ lower is better.")
    if report.excluded:
        parts += ["", f"## Runs not in the table ({len(report.excluded)})", ""]
        parts.append("| run | status | seed | choices | reason |")
        parts.append("|:---|:---|---:|:---|:---|")
        for item in report.excluded:
            record = item.record
            choices = ", ".join(f"{k}={v}" for k, v in record.settings().items() if k != "seed")
            parts.append(
                f"| {_md_escape(record.name)} | {item.status} | "
                f"{record.seed if record.seed is not None else EMPTY} | "
                f"{_md_escape(choices)} | {_md_escape(item.reason)} |"
            )
    if report.notes:
        parts += ["", "## Notes", ""]
        parts.extend(f"- {note}" for note in report.notes)
    return "\n".join(parts).rstrip() + "\n"


# -- LaTeX ------------------------------------------------------------------------------------
def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table (underscores, percent signs, braces, ...)."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text)).replace("±", r"$\pm$")


def _latex_title(column: Column) -> str:
    if column.kind == "delta":
        name = rf"$\Delta_m$ {DELTA_NAMES.get(column.metric, column.metric)} (\%)"
    else:
        name = latex_escape(column.key)
    return f"{name} {LATEX_ARROWS[column.higher_is_better]}".rstrip()


def latex_table(report: Report, digits: int = DEFAULT_DIGITS, label: str = "tab:mtl-report") -> str:
    """`table.tex`: a booktabs `table` with `\\pm`, bold best and escaped names."""
    columns = report.columns
    best = {c.key: best_rows(report, c, decimals_of(c, digits)) for c in columns}
    seeds = report.seeds
    caption = (
        f"{report.checkpoint_rule}. Mean ± std (ddof={STD_DDOF}) over "
        f"{len(seeds)} seed(s); best in bold; delta_m in percent against the "
        f"{BASELINE_LABEL} baselines, lower is better."
    )
    lines = [
        r"% generated by python -m mtl.report; needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{l" + "r" * (len(columns) + 1) + "}",
        r"\toprule",
        " & ".join([latex_escape(row_title(report)), "$n$", *map(_latex_title, columns)]) + r" \\",
        r"\midrule",
    ]
    previous_baseline = None
    for row in report.rows:
        if previous_baseline and not row.baseline:
            lines.append(r"\midrule")
        previous_baseline = row.baseline
        cells = [latex_escape(row.label), str(row.n)]
        for column in columns:
            mean, std, count = cell_parts(row.cells[column.key], row, column, digits)
            text = f"{mean} $\\pm$ {std}" if std else mean
            text = text.replace(EMPTY, "--")
            if row.label in best[column.key]:
                text = rf"\textbf{{{text}}}"
            cells.append(f"{text} {latex_escape(count)}".rstrip())
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# -- CSV of every run ----------------------------------------------------------------------------
def runs_csv(report: Report, path: Path) -> Path:
    """`runs.csv`: one line per run (failed and missing too): where, how it ended, its row,
    seed, choices and overrides, the report's delta_m and every metric it logged."""
    records = report.records
    choice_keys = _ordered(k for r in records for k in r.choices)
    override_keys = _ordered(k for r in records for k in r.overrides if k not in r.choices)
    metric_keys = sorted({k for r in records for k in r.metrics})
    delta_keys = [c.key for c in report.delta_columns]
    status = {item.record.name: (item.status, item.reason) for item in report.excluded}
    header = [
        "run",
        "status",
        "reason",
        "row",
        "baseline",
        "seed",
        *(f"choice/{k}" for k in choice_keys),
        *(f"override/{k}" for k in override_keys),
        *(f"report/{k}" for k in delta_keys),
        *metric_keys,
    ]
    baseline_names = {r.name for r in report.baseline_runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for record in records:
            state, reason = status.get(record.name, (record.status, record.message))
            values = report.values.get(record.name, {})
            writer.writerow(
                [
                    record.name,
                    state,
                    reason,
                    report.row_of.get(record.name, ""),
                    record.name in baseline_names,
                    "" if record.seed is None else record.seed,
                    *(record.choices.get(k, "") for k in choice_keys),
                    *(record.overrides.get(k, "") for k in override_keys),
                    *(_csv_number(values.get(k)) for k in delta_keys),
                    *(_csv_number(record.metrics.get(k)) for k in metric_keys),
                ]
            )
    return path


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _ordered(keys) -> list[str]:
    out: list[str] = []
    for key in keys:
        if key not in out:
            out.append(key)
    return out
