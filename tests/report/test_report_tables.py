"""Markdown and LaTeX tables, the statements above them, and runs.csv."""

from __future__ import annotations

import csv

import pytest
from fixtures.report_sweep import make_sweep
from fixtures.sweeps import make_run

from mtl.report.aggregate import build_report
from mtl.report.collect import collect
from mtl.report.tables import (
    latex_escape,
    latex_table,
    markdown_document,
    markdown_table,
    runs_csv,
)

COLUMNS = ["seg/miou", "seg/pixel_acc", "depth/abs_err"]


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path)


def table_rows(markdown: str) -> dict[str, list[str]]:
    """`{label: [cells]}` of a Markdown table."""
    out = {}
    for line in markdown.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = cells[1:]
    return out


def test_markdown_cells_arrows_and_bold(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    table = markdown_table(report)
    header = table.splitlines()[0]
    assert "| weighting | n | seg/miou ↑ | seg/pixel_acc ↑ | depth/abs_err ↓ |" in header
    assert "Δm per metric (%) ↓ | Δm per task (%) ↓ |" in header
    rows = table_rows(table)
    assert rows["ew"][:4] == ["2", "**0.600 ± 0.071**", "**0.850 ± 0.000**", "0.500 ± 0.071"]
    assert rows["uw"][:4] == ["2", "0.510 ± 0.014", "**0.850 ± 0.071**", "**0.320 ± 0.028**"]
    assert rows["STL"][1] == "0.550 ± 0.071"  # the baseline row is never bold
    # delta_m signed, two decimals; uw is best (lowest)
    assert rows["uw"][4].startswith("**-") and rows["ew"][4].startswith(("+", "-"))


def test_document_states_rule_seeds_baselines_and_lists_excluded_runs(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    doc = markdown_document(report, title="Weightings")
    assert doc.startswith("# Weightings\n")
    assert "- **Checkpoint**: test split, evaluated with the best-validation checkpoint" in doc
    assert (
        "- **Seeds**: mean ± sample std (ddof=1) over seeds; n = 2 run(s) per row; seeds 0, 1"
        in doc
    )
    assert "- **Baselines**: 2 STL run(s):" in doc and "stl/0 (seed 0)" in doc
    assert "over seg/miou, seg/pixel_acc, depth/abs_err" in doc
    assert "- **Reproduce**: `python train.py -m seed=0,1 weighting=ew,uw,pcgrad`" in doc
    assert "## Runs not in the table (2)" in doc
    failed = next(line for line in doc.splitlines() if "mtl/4 |" in line)
    assert "| failed | 0 |" in failed and "ValueError: boom second line" in failed
    missing = next(line for line in doc.splitlines() if "mtl/5 |" in line)
    assert "| missing | 1 |" in missing and "weighting=pcgrad" in missing


def test_latex_is_booktabs_with_pm_bold_and_escapes(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    tex = latex_table(report)
    for needed in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrrrrrr}"):
        assert needed in tex
    assert r"seg/pixel\_acc $\uparrow$" in tex and r"depth/abs\_err $\downarrow$" in tex
    assert r"$\Delta_m$ per metric (\%) $\downarrow$" in tex
    assert r"\textbf{0.600 $\pm$ 0.071}" in tex
    ew = next(line for line in tex.splitlines() if line.startswith("ew &"))
    assert ew.endswith(r"\\") and ew.count("&") == 6
    assert "_" not in tex.replace(r"\_", "").replace(r"\Delta_m", "")  # every _ escaped


def test_latex_escape():
    assert latex_escape("a_b 5% & #1 {x} ~ ^ \\") == (
        r"a\_b 5\% \& \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"
    )
    assert latex_escape("0.5 ± 0.1") == r"0.5 $\pm$ 0.1"


def test_one_seed_shows_no_std_and_partial_cells_say_n(tmp_path):
    make_run(
        tmp_path / "a",
        seed=0,
        choices={"weighting": "ew"},
        tasks=["seg"],
        metrics={"test/seg/miou": 0.5, "test/seg/pixel_acc": 0.9},
    )
    make_run(
        tmp_path / "b",
        seed=1,
        choices={"weighting": "ew"},
        tasks=["seg"],
        metrics={"test/seg/miou": 0.7},
    )
    make_run(
        tmp_path / "c",
        seed=0,
        choices={"weighting": "uw"},
        tasks=["seg"],
        metrics={"test/seg/miou": 0.4},
    )
    report = build_report(collect([tmp_path]), metrics=["seg/miou", "seg/pixel_acc"])
    rows = table_rows(markdown_table(report))
    assert rows["ew"][:3] == ["2", "**0.600 ± 0.141**", "0.900 (n=1)"]
    assert rows["uw"][:3] == ["1", "0.400", "–"]


def test_runs_csv_has_every_run(sweep, tmp_path):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    path = runs_csv(report, tmp_path / "out" / "runs.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    by_run = {
        row["run"].rsplit("/", 2)[-2] + "/" + row["run"].rsplit("/", 1)[-1]: row for row in rows
    }
    ew0 = by_run["mtl/0"]
    assert (ew0["status"], ew0["row"], ew0["seed"], ew0["choice/weighting"]) == (
        "ok",
        "ew",
        "0",
        "ew",
    )
    assert float(ew0["test/seg/miou"]) == 0.55 and float(ew0["model/params/total"]) == 1000.0
    assert (
        float(ew0["report/delta_m/per_metric"]) == report.values[ew0["run"]]["delta_m/per_metric"]
    )
    assert by_run["stl/0"]["baseline"] == "True"
    assert by_run["mtl/4"]["status"] == "failed" and "boom" in by_run["mtl/4"]["reason"]
    assert by_run["mtl/5"]["status"] == "missing" and by_run["mtl/5"]["test/seg/miou"] == ""
