"""Rows, mean ± std over seeds, best by direction, delta_m against the STL seeds."""

from __future__ import annotations

import math
import statistics

import pytest
from fixtures.report_sweep import VALUES, make_sweep, metrics_of
from fixtures.sweeps import make_run

from mtl.metrics import BaselineTable
from mtl.report.aggregate import Stat, best_rows, build_report
from mtl.report.collect import FAILED, MISSING, ReportError, collect

COLUMNS = ["seg/miou", "seg/pixel_acc", "depth/abs_err"]
STL = [VALUES["ew", "stl", 0], VALUES["ew", "stl", 1]]
BASE = [statistics.fmean(v[i] for v in STL) for i in range(3)]  # 0.55, 0.85, 0.5


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path)


def by_hand(miou: float, pixel_acc: float, abs_err: float, base=BASE) -> tuple[float, float]:
    """delta_m (per metric, per task) of one run, written out: higher is better for miou and
    pixel_acc (sign flipped), lower for abs_err."""
    seg = [-(miou - base[0]) / base[0], -(pixel_acc - base[1]) / base[1]]
    depth = [(abs_err - base[2]) / base[2]]
    per_metric = 100 * (sum(seg) + sum(depth)) / 3
    per_task = 100 * (sum(seg) / 2 + depth[0]) / 2
    return per_metric, per_task


def rows_by_label(report):
    return {row.label: row for row in report.rows}


def test_rows_hold_mean_std_and_n(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    assert report.row_keys == ["weighting"]
    rows = rows_by_label(report)
    assert list(rows) == ["STL", "ew", "uw"]
    assert rows["STL"].baseline and not rows["ew"].baseline
    ew, uw = rows["ew"], rows["uw"]
    assert ew.n == 2 and sorted(ew.seeds) == [0, 1]
    assert ew.cells["seg/miou"].mean == pytest.approx(0.60)
    assert ew.cells["seg/miou"].std == pytest.approx(math.sqrt(2 * 0.05**2))  # ddof=1
    assert uw.cells["depth/abs_err"].mean == pytest.approx(0.32)
    assert uw.cells["depth/abs_err"].std == pytest.approx(0.02 * math.sqrt(2))
    assert report.seeds == [0, 1]


def test_best_follows_each_metrics_direction(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    column = {c.key: c for c in report.columns}
    assert column["seg/miou"].higher_is_better is True
    assert column["depth/abs_err"].higher_is_better is False
    assert best_rows(report, column["seg/miou"], 3) == {"ew"}  # 0.60 > 0.51
    assert best_rows(report, column["depth/abs_err"], 3) == {"uw"}  # 0.32 < 0.50
    assert best_rows(report, column["seg/pixel_acc"], 3) == {"ew", "uw"}  # tie: 0.85
    assert best_rows(report, column["delta_m/per_metric"], 2) == {"uw"}


def test_delta_m_per_run_then_mean_and_std_over_seeds(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    assert report.delta_metrics == {"seg": ["miou", "pixel_acc"], "depth": ["abs_err"]}
    for weighting in ("ew", "uw"):
        runs = [by_hand(*VALUES[weighting, "hps", seed]) for seed in (0, 1)]
        cells = rows_by_label(report)[weighting].cells
        for index, form in enumerate(("per_metric", "per_task")):
            forms = [run[index] for run in runs]
            assert cells[f"delta_m/{form}"].mean == pytest.approx(statistics.fmean(forms))
            assert cells[f"delta_m/{form}"].std == pytest.approx(statistics.stdev(forms))
    # ew seed 1: miou 0.65, pixel_acc 0.85, abs_err 0.55 against 0.55, 0.85, 0.5
    run = next(r for r in report.rows[1].runs if r.seed == 1)
    assert report.values[run.name]["delta_m/per_metric"] == pytest.approx(
        100 * (-0.10 / 0.55 + 0 + 0.05 / 0.5) / 3
    )
    assert report.values[run.name]["delta_m/per_task"] == pytest.approx(
        100 * ((-0.10 / 0.55 + 0) / 2 + 0.05 / 0.5) / 2
    )


def test_failed_and_missing_runs_are_listed_not_dropped(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    excluded = {item.record.name.rsplit("/", 2)[-2:][-1]: item for item in report.excluded}
    assert excluded["4"].status == FAILED and excluded["4"].reason.startswith("ValueError: boom")
    assert excluded["5"].status == MISSING
    assert "pcgrad" not in rows_by_label(report)
    assert len(report.records) == 8  # every run stays in the report's record (runs.csv)


def test_default_columns_are_each_tasks_summary_metrics(sweep):
    report = build_report(collect([sweep]))
    keys = [c.key for c in report.metric_columns]
    # seg: dice, miou, pixel_acc (not dice_liver, not loss); depth: those it logged
    assert keys == ["seg/dice", "seg/miou", "seg/pixel_acc", "depth/abs_err", "depth/rmse"]
    assert [c.key for c in report.delta_columns] == ["delta_m/per_metric", "delta_m/per_task"]


def test_explicit_rows_and_unknown_keys(sweep):
    report = build_report(collect([sweep]), rows=["model", "weighting"], metrics=COLUMNS)
    assert [r.label for r in report.rows] == ["STL", "hps / ew", "hps / uw"]
    with pytest.raises(ReportError, match=r"--rows \['optimiser'\] not found"):
        build_report(collect([sweep]), rows=["optimiser"])
    with pytest.raises(ReportError, match="no run has 'test/seg/nope'"):
        build_report(collect([sweep]), metrics=["seg/nope"])


def test_a_row_that_mixes_configurations_is_noted(sweep):
    report = build_report(collect([sweep]), rows=["model"], metrics=COLUMNS)
    (hps,) = [r for r in report.rows if r.label == "hps"]
    assert hps.n == 4
    assert any("row 'hps' mixes runs that differ in ['weighting'" in n for n in report.notes)
    assert any("seed(s) [0, 1] more than once" in n for n in report.notes)


def test_other_stage_and_runs_without_it(tmp_path):
    for seed in (0, 1):
        metrics = metrics_of(*VALUES["ew", "hps", seed])
        if seed == 0:
            metrics = {**metrics, "test_last5/seg/miou": 0.7}
        make_run(tmp_path / str(seed), seed=seed, choices={"weighting": "ew"}, metrics=metrics)
    report = build_report(collect([tmp_path]), stage="test_last5")
    assert [c.key for c in report.metric_columns] == ["seg/miou"]
    cell = report.rows[0].cells["seg/miou"]
    assert (cell.mean, cell.n, report.rows[0].n) == (0.7, 1, 1)
    assert math.isnan(cell.std)  # one seed: no std
    (item,) = report.excluded
    assert item.status == MISSING and "no 'test_last5/<task>/<metric>' value" in item.reason
    assert "last 5 epochs" in report.checkpoint_rule
    with pytest.raises(ReportError, match="no finished run has 'test_last9/"):
        build_report(collect([tmp_path]), stage="test_last9")


def test_checkpoint_rule_names_the_monitor(sweep):
    report = build_report(collect([sweep]), metrics=COLUMNS)
    assert "best-validation checkpoint" in report.checkpoint_rule
    assert "val/seg/dice (max) for 6 runs" in report.checkpoint_rule


def test_published_baselines_from_a_table(sweep):
    table = BaselineTable(
        values={"seg": {"miou": 0.5, "pixel_acc": 0.8}, "depth": {"abs_err": 0.4}},
        higher_is_better={},
    )
    report = build_report(collect([sweep]), metrics=COLUMNS, baseline_table=table)
    expected = [by_hand(*VALUES["uw", "hps", s], base=[0.5, 0.8, 0.4])[0] for s in (0, 1)]
    uw = rows_by_label(report)["uw"]
    assert uw.cells["delta_m/per_metric"].mean == pytest.approx(statistics.fmean(expected))
    assert report.baseline_runs == [] and "STL" in rows_by_label(report)  # still shown


def test_baselines_from_other_directories(sweep):
    report = build_report(
        collect([sweep / "mtl"]), metrics=COLUMNS, baseline_runs=collect([sweep / "stl"])
    )
    uw = rows_by_label(report)["uw"]
    expected = [by_hand(*VALUES["uw", "hps", s])[1] for s in (0, 1)]
    assert uw.cells["delta_m/per_task"].mean == pytest.approx(statistics.fmean(expected))
    assert [r.name.rsplit("/", 1)[-1] for r in report.baseline_runs] == ["0", "1"]


def test_each_run_is_scored_against_the_stl_runs_of_its_encoder(tmp_path):
    for encoder, miou in (("unet", 0.5), ("resnet18", 0.8)):
        make_run(
            tmp_path / f"stl_{encoder}",
            seed=0,
            choices={"model": "stl", "encoder": encoder, "weighting": "ew"},
            tasks=["seg"],
            metrics={"test/seg/miou": miou},
        )
        make_run(
            tmp_path / f"hps_{encoder}",
            seed=0,
            choices={"model": "hps", "encoder": encoder, "weighting": "ew"},
            tasks=["seg"],
            metrics={"test/seg/miou": 0.6},
        )
    report = build_report(collect([tmp_path]), rows=["encoder"], metrics=["seg/miou"])
    assert report.match_keys == ["encoder"]
    rows = rows_by_label(report)
    assert set(rows) == {"STL (unet)", "STL (resnet18)", "unet", "resnet18"}
    assert rows["unet"].cells["delta_m/per_metric"].mean == pytest.approx(-100 * 0.1 / 0.5)
    assert rows["resnet18"].cells["delta_m/per_metric"].mean == pytest.approx(100 * 0.2 / 0.8)


def test_without_baselines_delta_m_is_absent_and_said(sweep):
    report = build_report(collect([sweep / "mtl"]), metrics=COLUMNS)
    assert all(r.cells["delta_m/per_metric"].n == 0 for r in report.rows)
    assert any("no STL baseline runs" in note for note in report.notes)


def test_baselines_with_other_settings_are_flagged(tmp_path):
    make_run(
        tmp_path / "stl",
        seed=0,
        choices={"model": "stl", "weighting": "ew"},
        tasks=["seg"],
        metrics={"test/seg/miou": 0.5},
        overrides=["model=stl", "data.num_train=10"],
    )
    make_run(
        tmp_path / "hps",
        seed=0,
        choices={"model": "hps", "weighting": "ew"},
        tasks=["seg"],
        metrics={"test/seg/miou": 0.6},
        overrides=["data.num_train=99"],
    )
    report = build_report(collect([tmp_path]), metrics=["seg/miou"])
    assert any("data.num_train (10 vs 99)" in note for note in report.notes)


def test_a_task_without_baseline_leaves_delta_m_out_with_the_reason(sweep, tmp_path):
    make_run(
        tmp_path / "cls_run",
        seed=0,
        choices={"model": "hps", "weighting": "gls", "encoder": "unet"},
        tasks=["seg", "cls"],
        metrics={"test/seg/miou": 0.6, "test/cls/acc": 0.5},
    )
    records = collect([sweep, tmp_path / "cls_run"])
    report = build_report(records, rows=["weighting"], metrics=["seg/miou"])
    gls = rows_by_label(report)["gls"]
    assert gls.cells["delta_m/per_metric"].n == 0
    assert any("no baseline value for task 'cls'" in note for note in report.notes)


def test_stat_of_skips_non_finite_values():
    stat = Stat.of([1.0, math.nan, 3.0, None])
    assert (stat.mean, stat.std, stat.n) == (2.0, math.sqrt(2.0), 2)
    assert Stat.of([]).n == 0


def test_no_runs():
    with pytest.raises(ReportError, match="no runs found"):
        build_report([])


def test_stl_runs_in_the_sweep_stay_apart_when_baselines_name_others(sweep, tmp_path):
    make_run(
        tmp_path / "other_stl",
        seed=0,
        choices={"model": "stl", "weighting": "ew", "encoder": "unet"},
        metrics=metrics_of(0.5, 0.8, 0.4),
    )
    report = build_report(
        collect([sweep]), metrics=COLUMNS, baseline_runs=collect([tmp_path / "other_stl"])
    )
    rows = rows_by_label(report)
    assert list(rows) == ["STL", "STL (not the reference)", "ew", "uw"]
    assert rows["STL"].n == 1 and rows["STL (not the reference)"].n == 2
    expected = [by_hand(*VALUES["ew", "hps", s], base=[0.5, 0.8, 0.4])[0] for s in (0, 1)]
    assert rows["ew"].cells["delta_m/per_metric"].mean == pytest.approx(statistics.fmean(expected))


def test_per_class_scores_are_higher_is_better_without_class_names():
    """A report reads directions from unbound tasks (class names unknown): a per-class
    recall or Dice column still gets its arrow; an unknown metric gets none."""
    from mtl.report.directions import direction_of

    known = {"cls": {"acc": True, "balanced_acc": True}, "seg": {"dice": True}}
    assert direction_of(known, "cls", "recall_malignant") is True
    assert direction_of(known, "cls", "recall_no_lesion") is True
    assert direction_of(known, "seg", "lesion_recall_lesion") is True
    assert direction_of(known, "seg", "dice_liver") is True
    assert direction_of(known, "cls", "mystery_score") is None
