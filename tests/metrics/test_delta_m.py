import dataclasses
import json
from pathlib import Path

import pytest

from mtl.metrics import (
    delta_m,
    directions_from_tasks,
    load_baselines,
    load_baselines_yaml,
    load_results,
    nest_metrics,
)

NYUV2_YAML = Path(__file__).resolve().parents[2] / "conf/baselines/nyuv2_stl_segnet_mtan.yaml"

# Nash-MTL, SegNet-MTAN, NYUv2, in our units (fractions for miou/pixel_acc/within_*)
NASH_MTL = {
    "seg": {"miou": 0.4013, "pixel_acc": 0.6593},
    "depth": {"abs_err": 0.5261, "rel_err": 0.2171},
    "normals": {
        "mean": 25.26,
        "median": 20.08,
        "within_11.25": 0.2840,
        "within_22.5": 0.5547,
        "within_30": 0.6815,
    },
}


def test_published_baselines_yaml_holds_the_design_numbers():
    table = load_baselines_yaml(NYUV2_YAML)
    assert dict(table.values["seg"]) == {"miou": 0.3830, "pixel_acc": 0.6376}
    assert dict(table.values["depth"]) == {"abs_err": 0.6754, "rel_err": 0.2780}
    assert dict(table.values["normals"]) == {
        "mean": 25.01,
        "median": 19.21,
        "within_11.25": 0.3014,
        "within_22.5": 0.5720,
        "within_30": 0.6915,
    }
    assert table.higher_is_better["normals"]["median"] is False
    assert table.higher_is_better["normals"]["within_30"] is True
    assert "Nash-MTL" in table.source


def test_nash_mtl_nyuv2_row_reproduces_the_published_delta_m():
    table = load_baselines_yaml(NYUV2_YAML)
    result = delta_m(NASH_MTL, table.values, table.higher_is_better)
    # by hand, in percent: higher-is-better metrics enter with a minus sign
    by_hand = {
        "miou": -(40.13 - 38.30) / 38.30,
        "pixel_acc": -(65.93 - 63.76) / 63.76,
        "abs_err": (0.5261 - 0.6754) / 0.6754,
        "rel_err": (0.2171 - 0.2780) / 0.2780,
        "mean": (25.26 - 25.01) / 25.01,
        "median": (20.08 - 19.21) / 19.21,
        "within_11.25": -(28.40 - 30.14) / 30.14,
        "within_22.5": -(55.47 - 57.20) / 57.20,
        "within_30": -(68.15 - 69.15) / 69.15,
    }
    for metrics in result.relative.values():
        for name, value in metrics.items():
            assert value == pytest.approx(100 * by_hand[name], rel=1e-9)
    per_metric = 100 * sum(by_hand.values()) / 9  # -4.0468
    assert result.per_metric == pytest.approx(per_metric, rel=1e-9)
    # published: -4.04 (Nash-MTL paper), -4.05 (DESIGN.md); the rounded inputs give -4.047
    assert abs(result.per_metric - (-4.05)) < 0.02
    assert abs(result.per_metric - (-4.04)) < 0.02
    # LibMTL form: per-task means first; DESIGN.md quotes -7.65
    seg = (by_hand["miou"] + by_hand["pixel_acc"]) / 2
    depth = (by_hand["abs_err"] + by_hand["rel_err"]) / 2
    normals = sum(by_hand[k] for k in NASH_MTL["normals"]) / 5
    assert result.per_task == pytest.approx(100 * (seg + depth + normals) / 3, rel=1e-9)
    assert abs(result.per_task - (-7.65)) < 0.02


def test_two_forms_on_a_small_example():
    results = {"a": {"acc": 0.9, "err": 1.0}, "b": {"err": 3.0}}
    baselines = {"a": {"acc": 0.8, "err": 2.0}, "b": {"err": 2.0}}
    directions = {"a": {"acc": True, "err": False}, "b": {"err": False}}
    out = delta_m(results, baselines, directions)
    # a/acc: -(0.9 - 0.8) / 0.8 = -12.5 %, a/err: -50 %, b/err: +50 %
    assert out.per_metric == pytest.approx((-12.5 - 50 + 50) / 3)
    assert out.per_task == pytest.approx(((-12.5 - 50) / 2 + 50) / 2)
    assert out.per_task_means["b"] == pytest.approx(50)
    assert out.as_flat()["delta_m/a/acc"] == pytest.approx(-12.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.per_metric = 0.0  # type: ignore[misc]


def test_default_selection_is_the_shared_scores_and_can_be_chosen():
    results = {"seg": {"miou": 0.5, "dice": 0.7, "loss": 0.3}}
    baselines = {"seg": {"miou": 0.4, "loss": 0.2}, "depth": {"abs_err": 0.5}}
    directions = {"seg": {"miou": True, "dice": True}}
    out = delta_m(results, baselines, directions)  # dice: no baseline; loss: not a score
    assert dict(out.relative) == {"seg": {"miou": pytest.approx(-25.0)}}
    with pytest.raises(ValueError, match="'seg/dice' is missing in the baseline"):
        delta_m(results, baselines, directions, metrics={"seg": ["miou", "dice"]})
    with pytest.raises(ValueError, match="'depth/abs_err' is missing in the result"):
        delta_m(results, baselines, directions, metrics={"depth": ["abs_err"]})


@pytest.mark.parametrize(
    ("baseline", "result", "directions", "message"),
    [
        (0.0, 1.0, True, "baseline of 'seg/miou' must be finite and non-zero"),
        (float("nan"), 1.0, True, "baseline of 'seg/miou' must be finite"),
        (1.0, float("inf"), True, "result of 'seg/miou' must be finite"),
        (1.0, 1.0, None, "unknown direction for 'seg/miou'"),
    ],
)
def test_bad_inputs_name_the_metric(baseline, result, directions, message):
    dirs = {"seg": {"miou": directions}} if directions is not None else {"seg": {}}
    with pytest.raises(ValueError, match=message):
        delta_m({"seg": {"miou": result}}, {"seg": {"miou": baseline}}, dirs)


def test_task_without_baseline_is_an_error():
    with pytest.raises(ValueError, match="task 'cls' has no baseline"):
        delta_m({"cls": {"acc": 0.5}}, {"seg": {"miou": 0.5}}, {"cls": {"acc": True}})


def test_nest_metrics_keeps_one_stage():
    flat = {
        "test/seg/miou": 0.7,
        "test/normals/within_11.25": 0.3,
        "test/loss": 1.0,
        "val/seg/miou": 0.8,
        "best_val/seg/dice": 0.9,
    }
    assert nest_metrics(flat, "test/") == {
        "seg": {"miou": 0.7},
        "normals": {"within_11.25": 0.3},
    }
    assert nest_metrics(flat, "val") == {"seg": {"miou": 0.8}}


def _run(tmp_path: Path, name: str, metrics: dict) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_load_baselines_merges_single_task_runs(tmp_path):
    seg = _run(tmp_path, "stl_seg", {"test/seg/miou": 0.4, "val/seg/miou": 0.5})
    depth = _run(tmp_path, "stl_depth", {"test/depth/abs_err": 0.6, "test/seg/miou": 0.4})
    merged = load_baselines([seg, depth / "metrics.json"])
    assert merged == {"seg": {"miou": 0.4}, "depth": {"abs_err": 0.6}}
    assert load_baselines(seg, stage="val") == {"seg": {"miou": 0.5}}
    mtl = _run(tmp_path, "mtl", {"test/seg/miou": 0.44, "test/depth/abs_err": 0.54})
    out = delta_m(load_results(mtl), merged, {"seg": {"miou": True}, "depth": {"abs_err": False}})
    assert out.per_metric == pytest.approx((-10.0 - 10.0) / 2)


def test_load_baselines_rejects_conflicts_and_missing_files(tmp_path):
    a = _run(tmp_path, "a", {"test/seg/miou": 0.4})
    b = _run(tmp_path, "b", {"test/seg/miou": 0.41})
    with pytest.raises(ValueError, match="'seg/miou' differs between runs"):
        load_baselines([a, b])
    with pytest.raises(FileNotFoundError, match=r"metrics\.json"):
        load_baselines(tmp_path / "nope")
    with pytest.raises(ValueError, match="no 'test/<task>/<metric>' values"):
        load_baselines(_run(tmp_path, "c", {"val/seg/miou": 0.4}))


def test_yaml_errors(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("source: nothing\n")
    with pytest.raises(ValueError, match="needs a non-empty `baselines"):
        load_baselines_yaml(empty)
    stray = tmp_path / "stray.yaml"
    stray.write_text("baselines: {seg: {miou: 0.4}}\nhigher_is_better: {seg: {dice: true}}\n")
    with pytest.raises(ValueError, match="'seg/dice' has no baseline value"):
        load_baselines_yaml(stray)


def test_directions_from_tasks():
    class FakeTask:
        def __init__(self) -> None:
            self.name = "depth"
            self.higher_is_better = {"abs_err": False}

    assert directions_from_tasks([FakeTask()]) == {"depth": {"abs_err": False}}


def test_summary_metrics_leave_out_every_per_class_name():
    """delta_m and reports count summaries only: a class absent from the baseline's split
    (recall 0) must not make delta_m undefined."""
    from mtl.tasks import ClassificationTask, SegmentationTask
    from mtl.tasks.base import TargetSpec
    from mtl.training.delta_m_report import summary_metric_names

    seg = SegmentationTask("seg", lesion_classes=["lesion"])
    seg.bind(TargetSpec("segmentation", 3, ("background", "liver", "lesion")))
    cls = ClassificationTask("cls")
    cls.bind(TargetSpec("classification", 3, ("no_lesion", "benign", "malignant")))
    assert "dice_lesion" in seg.higher_is_better
    assert "lesion_recall_lesion" in seg.higher_is_better
    assert "recall_malignant" in cls.higher_is_better
    assert summary_metric_names(seg.higher_is_better) == [
        "dice",
        "miou",
        "pixel_acc",
        "lesion_recall",
    ]
    assert summary_metric_names(cls.higher_is_better) == ["acc", "balanced_acc", "f1", "auroc"]
