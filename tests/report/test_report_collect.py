"""Run discovery and records: statuses, choices, expected-but-absent jobs, CSV logs."""

from __future__ import annotations

import pytest
from fixtures.report_sweep import make_sweep
from fixtures.sweeps import make_run, write_csv_log, write_multirun

from mtl.report.collect import (
    FAILED,
    MISSING,
    OK,
    ReportError,
    choices_from_config,
    collect,
    find_run_dirs,
    read_csv_log,
)


@pytest.fixture
def sweep(tmp_path):
    return make_sweep(tmp_path)


def test_collect_finds_every_run_with_its_status(sweep):
    records = collect([sweep])
    by_status = {}
    for record in records:
        by_status.setdefault(record.status, []).append(record)
    assert len(by_status[OK]) == 6
    (failed,) = by_status[FAILED]
    assert failed.name.endswith("mtl/4")
    assert failed.message == "ValueError: boom second line"  # one line for the table
    (missing,) = by_status[MISSING]
    assert missing.name.endswith("mtl/5")
    assert "still running, or killed" in missing.message


def test_record_holds_choices_tasks_seed_and_metrics(sweep):
    record = next(r for r in collect([sweep]) if r.name.endswith("mtl/0"))
    assert record.choices == {
        "weighting": "ew",
        "model": "hps",
        "encoder": "unet",
        "tasks": "seg,depth",
    }  # hydra/* and unset groups dropped
    assert record.seed == 0
    assert record.tasks == ["seg", "depth"]
    assert record.overrides == {"seed": "0", "weighting": "ew"}
    assert record.metrics["test/seg/miou"] == 0.55
    assert record.history is not None and record.history()[0]["epoch"] == 0


def test_run_dirs_are_found_at_any_depth_and_not_inside_runs(tmp_path):
    make_run(tmp_path / "a" / "b" / "c" / "run1", seed=0, choices={"weighting": "ew"}, metrics={})
    run2 = make_run(tmp_path / "run2", seed=1, choices={"weighting": "ew"}, metrics={})
    # W&B keeps a config.yaml of its own inside the run folder: not a run
    (run2 / "wandb" / "offline-run-1" / "files").mkdir(parents=True)
    (run2 / "wandb" / "offline-run-1" / "files" / "config.yaml").write_text("a: 1\n")
    runs, _ = find_run_dirs(tmp_path)
    assert sorted(p.name for p in runs) == ["run1", "run2"]
    assert find_run_dirs(run2) == ([run2], [])  # a run dir given directly


def test_jobs_the_multirun_expected_but_never_started_are_missing(tmp_path):
    sweep = tmp_path / "sweep"
    write_multirun(sweep, ["seed=0,1", "weighting=ew,uw", "trainer.max_epochs=2"])
    make_run(
        sweep / "0",
        seed=0,
        choices={"weighting": "ew"},
        metrics={"test/seg/miou": 0.5},
        overrides=["seed=0", "weighting=ew", "trainer.max_epochs=2"],
        job=0,
    )
    records = collect([sweep])
    missing = [r for r in records if r.status == MISSING]
    assert len(missing) == 3
    assert {(r.overrides["seed"], r.overrides["weighting"]) for r in missing} == {
        ("0", "uw"),
        ("1", "ew"),
        ("1", "uw"),
    }
    assert all("never started" in r.message for r in missing)


def test_several_paths_and_duplicates(sweep):
    records = collect([sweep / "stl", sweep / "mtl", sweep / "stl" / "0"])
    assert len([r for r in records if r.name.endswith("stl/0")]) == 1
    assert len(records) == 8


def test_bad_paths_fail_clearly(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        collect([tmp_path / "nope"])
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ReportError, match="not a directory"):
        collect([tmp_path / "file.txt"])


def test_unreadable_metrics_make_a_failed_run(tmp_path):
    run = make_run(tmp_path / "run", seed=0, choices={"weighting": "ew"})
    (run / "metrics.json").write_text("{not json")
    (record,) = collect([tmp_path])
    assert record.status == FAILED and "unreadable metrics.json" in record.message


def test_unreadable_run_files_make_a_failed_run(tmp_path):
    run = make_run(tmp_path / "run", seed=0, choices={"weighting": "ew"}, metrics={})
    (run / ".hydra" / "hydra.yaml").write_text("hydra: [unclosed\n")
    (record,) = collect([tmp_path])
    assert record.status == FAILED and "unreadable run files" in record.message


def test_choices_from_config_recover_group_options():
    config = {
        "weighting": {"_target_": "mtl.weighting.MGDA", "grad_source": "features"},
        "model": {"_target_": "mtl.models.HardParameterSharing", "_partial_": True},
        "encoder": {"_target_": "some.unknown.Encoder"},
        "tasks": {"seg": {}, "cls": {}},
        "seed": 3,
    }
    choices = choices_from_config(config)
    assert choices["weighting"] == "mgda_ub"  # same class as mgda; grad_source decides
    assert choices["model"] == "hps"
    assert choices["encoder"] == "Encoder"  # not in conf/: the class name
    assert choices["tasks"] == "seg,cls"


def test_csv_log_rows_skip_empty_cells(tmp_path):
    path = write_csv_log(
        tmp_path / "metrics.csv",
        [{"epoch": 0, "val/seg/miou": 0.5}, {"epoch": 0, "train/loss_epoch": 2.0}],
    )
    assert read_csv_log(path) == [
        {"epoch": 0.0, "val/seg/miou": 0.5},
        {"epoch": 0.0, "train/loss_epoch": 2.0},
    ]
