"""W&B runs mapped onto the report's records, with a fake public API (no network here)."""

from __future__ import annotations

import pytest
from fixtures.report_sweep import VALUES, metrics_of

from mtl.report.aggregate import build_report
from mtl.report.collect import FAILED, MISSING, OK, ReportError
from mtl.report.wandb_source import default_api, plain_config, wandb_records

TASKS = {
    "seg": {"_target_": "mtl.tasks.SegmentationTask"},
    "depth": {"_target_": "mtl.tasks.DepthTask"},
}
WEIGHTINGS = {
    "ew": {"_target_": "mtl.weighting.EqualWeighting", "_partial_": True},
    "uw": {"_target_": "mtl.weighting.UncertaintyWeighting", "_partial_": True},
}
MODELS = {
    "hps": {"_target_": "mtl.models.HardParameterSharing", "_partial_": True},
    "stl": {"_target_": "mtl.models.SingleTaskNets", "_partial_": True},
}


class FakeRun:
    """What the public API's `Run` offers that the report uses."""

    def __init__(self, run_id, state, config, summary, history=()):
        self.id = run_id
        self.path = ["me", "proj", run_id]
        self.state = state
        self.config = config
        self.summary = summary
        self._history = list(history)

    def history(self, samples, pandas):
        assert pandas is False and samples > 0
        return self._history


class FakeApi:
    def __init__(self, runs):
        self._runs = runs
        self.calls = []

    def runs(self, path, filters=None):
        self.calls.append((path, filters))
        return iter(self._runs)


def wandb_config(weighting: str, model: str, seed: int) -> dict:
    """As W&B returns a logged config: some values wrapped as {"value": ...}, some dotted."""
    return {
        "seed": {"value": seed},
        "tasks": TASKS,
        "weighting": WEIGHTINGS[weighting],
        "model._target_": MODELS[model]["_target_"],
        "model._partial_": True,
        "optimized_metric": "val/seg/dice",
        "optimized_mode": "max",
        "_wandb": {"value": {"cli_version": "0.31.0"}},
    }


def fake_runs() -> list[FakeRun]:
    runs = []
    for (weighting, model, seed), values in VALUES.items():
        history = [
            {"epoch": 0, "_step": 1, "val/seg/miou": 0.1},
            {"epoch": 1, "_step": 3, "val/seg/miou": 0.2},
        ]
        runs.append(
            FakeRun(
                f"{weighting}-{model}-{seed}",
                "finished",
                wandb_config(weighting, model, seed),
                metrics_of(*values) | {"_runtime": 12, "note": "text"},
                history,
            )
        )
    runs.append(FakeRun("crashed-1", "crashed", wandb_config("uw", "hps", 2), {}))
    runs.append(FakeRun("running-1", "running", wandb_config("uw", "hps", 3), {"test/seg/miou": 1}))
    return runs


def test_runs_map_to_records():
    api = FakeApi(fake_runs())
    records = wandb_records("me/proj", group="sweep-1", api=api)
    assert api.calls == [("me/proj", {"group": "sweep-1"})]
    first = records[0]
    assert first.name == "me/proj/ew-stl-0" and first.status == OK
    assert first.seed == 0 and first.tasks == ["seg", "depth"]
    assert first.choices["weighting"] == "ew" and first.choices["model"] == "stl"
    assert first.choices["tasks"] == "seg,depth"
    assert first.metrics["test/seg/miou"] == 0.50 and "note" not in first.metrics
    assert first.history() == [
        {"epoch": 0.0, "_step": 1.0, "val/seg/miou": 0.1},
        {"epoch": 1.0, "_step": 3.0, "val/seg/miou": 0.2},
    ]
    crashed, running = records[-2:]
    assert crashed.status == FAILED and "crashed" in crashed.message
    assert running.status == MISSING and running.metrics == {}


def test_wandb_records_make_the_same_report_as_run_folders():
    records = wandb_records("me/proj", api=FakeApi(fake_runs()))
    report = build_report(records, metrics=["seg/miou", "depth/abs_err"])
    rows = {row.label: row for row in report.rows}
    assert list(rows) == ["STL", "ew", "uw"]
    assert rows["ew"].cells["seg/miou"].mean == pytest.approx(0.60)
    assert rows["uw"].cells["delta_m/per_metric"].n == 2
    assert {item.status for item in report.excluded} == {FAILED, MISSING}


def test_plain_config_unwraps_and_nests():
    assert plain_config(
        {"a.b": 1, "c": {"value": 2}, "d": {"value": 3, "desc": None}, "_wandb": {}}
    ) == {"a": {"b": 1}, "c": 2, "d": 3}


def test_bad_project_names_and_empty_projects():
    with pytest.raises(ReportError, match="'entity/project'"):
        wandb_records("proj", api=FakeApi([]))
    with pytest.raises(ReportError, match="no runs in group 'g' of W&B project 'me/proj'"):
        wandb_records("me/proj", group="g", api=FakeApi([]))


def test_an_unreachable_api_is_a_clear_error():
    class Offline:
        def runs(self, path, filters=None):
            raise ConnectionError("name resolution failed")

    with pytest.raises(ReportError, match="is this machine online"):
        wandb_records("me/proj", api=Offline())


def test_offline_or_without_a_key_says_how_to_fix_it(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ReportError, match="WANDB_MODE=offline"):
        default_api()
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    with pytest.raises(ReportError, match="no W&B API key: run `wandb login`"):
        default_api()
