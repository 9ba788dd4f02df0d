"""`python -m mtl.report <sweep dir> [...]`: tables, CSV and plots of a sweep's runs.

Exit status: 0 (failed or missing runs are listed in the report and warned about on stderr),
1 with `--strict` when a run failed or is missing, 2 when nothing can be reported.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from mtl.metrics import load_baselines_yaml
from mtl.report.aggregate import Report, build_report
from mtl.report.collect import ReportError, collect
from mtl.report.plots import bar_charts, training_curves
from mtl.report.tables import DEFAULT_DIGITS, latex_table, markdown_document, runs_csv
from mtl.report.wandb_source import wandb_records

REPORT_DIR = "report"
YAML_SUFFIXES = (".yaml", ".yml")
EXIT_OK, EXIT_STRICT, EXIT_ERROR = 0, 1, 2
PLOT_PATTERNS = ("bars_*.png", "curves_*.png")


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtl.report",
        description="Collect the runs of one or more sweeps into a Markdown and a LaTeX table "
        "(mean ± std over seeds, delta_m against STL baselines), a CSV of every run and plots.",
    )
    p.add_argument("paths", nargs="*", type=Path, help="sweep dirs, run dirs, or folders of them")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read runs from W&B (online)")
    p.add_argument("--group", help="with --wandb: only this W&B group")
    p.add_argument("--out", type=Path, help=f"output folder (default: <first path>/{REPORT_DIR})")
    p.add_argument(
        "--rows",
        type=_list,
        help="keys that make rows, e.g. weighting,model "
        "(default: the choices that vary across runs, seeds excepted)",
    )
    p.add_argument(
        "--stage",
        default="test",
        help="test (best-validation checkpoint, default) "
        "or test_last<N> (mean of the last N epochs)",
    )
    p.add_argument(
        "--metrics",
        type=_list,
        help="columns as task/metric, e.g. seg/dice,cls/auroc "
        "(default: each task's summary metrics); delta_m uses these columns",
    )
    p.add_argument(
        "--extra",
        type=_list,
        default=[],
        help="more columns from metrics.json, shown without bold, e.g. model/params/total",
    )
    p.add_argument(
        "--baselines",
        nargs="+",
        help="STL run/sweep dirs, or one YAML of published "
        "numbers (conf/baselines/*.yaml); default: the model=stl runs given",
    )
    p.add_argument("--digits", type=int, default=DEFAULT_DIGITS, help="decimals of metrics")
    p.add_argument("--title", default="", help="the Markdown document's title")
    p.add_argument("--no-plots", action="store_true", help="tables and CSV only")
    p.add_argument("--strict", action="store_true", help="exit 1 if any run failed or is missing")
    return p


def make_report(args: argparse.Namespace) -> Report:
    if not args.paths and not args.wandb:
        raise ReportError("give sweep/run directories, or --wandb entity/project")
    records = collect(args.paths) if args.paths else []
    if args.wandb:
        records += wandb_records(args.wandb, args.group)
    elif args.group:
        raise ReportError("--group needs --wandb")
    baseline_runs, table, source = None, None, ""
    if args.baselines:
        if len(args.baselines) == 1 and Path(args.baselines[0]).suffix in YAML_SUFFIXES:
            path = Path(args.baselines[0])
            if not path.is_file():
                raise ReportError(f"baselines file '{path}' not found")
            table = load_baselines_yaml(path)
            source = f"published numbers from {path}" + (
                f" ({table.source})" if table.source else ""
            )
        else:
            baseline_runs = collect(args.baselines)
    return build_report(
        records,
        stage=args.stage,
        rows=args.rows,
        metrics=args.metrics,
        extra=args.extra,
        baseline_runs=baseline_runs,
        baseline_table=table,
        baseline_source=source,
    )


def write_report(
    report: Report, out: Path, digits: int = DEFAULT_DIGITS, title: str = "", plots: bool = True
) -> list[Path]:
    """Write `table.md`, `table.tex`, `runs.csv` and the PNGs into `out`; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    for pattern in PLOT_PATTERNS:  # plots of an earlier report may name other columns
        for stale in out.glob(pattern):
            stale.unlink()
    written = []
    for name, text in (
        ("table.md", markdown_document(report, digits, title)),
        ("table.tex", latex_table(report, digits)),
    ):
        (out / name).write_text(text)
        written.append(out / name)
    written.append(runs_csv(report, out / "runs.csv"))
    if plots:
        written += bar_charts(report, out)
        curves, notes = training_curves(report, out)
        written += curves
        report.notes.extend(notes)
        if notes:  # the notes belong in the document too
            (out / "table.md").write_text(markdown_document(report, digits, title))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    out = args.out or (Path(args.paths[0]) / REPORT_DIR if args.paths else None)
    try:
        if out is None and args.wandb:
            raise ReportError("give --out when reading only from W&B")
        report = make_report(args)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    shown = sys.argv[1:] if argv is None else list(argv)
    report.commands.append(" ".join(["python -m mtl.report", *map(shlex.quote, shown)]))
    written = write_report(report, out, args.digits, args.title, plots=not args.no_plots)
    print((out / "table.md").read_text())
    print(f"wrote {len(written)} files to {out}", file=sys.stderr)
    if report.excluded:
        counts: dict[str, int] = {}
        for item in report.excluded:
            counts[item.status] = counts.get(item.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in counts.items())
        print(f"warning: {summary} run(s) not in the table (listed in table.md)", file=sys.stderr)
        if args.strict:
            print("error: --strict and some runs failed or are missing", file=sys.stderr)
            return EXIT_STRICT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
