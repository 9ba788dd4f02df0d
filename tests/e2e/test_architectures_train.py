"""Every architecture trains through `train.py`'s recipe, with loss and gradient weightings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY, compose_config

from mtl.training.run import METRICS_FILE, train

STEPS = ["trainer.max_epochs=1", "trainer.limit_val_batches=1"]


@pytest.mark.parametrize(
    "model,weighting",
    [
        ("mtan", "ew"),
        ("mtan", "mgda_ub"),  # grad_source=features: z = the shared pyramid before attention
        ("cross_stitch", "ew"),
        ("cross_stitch", "pcgrad"),  # grad_source=params: columns + units are shared
        ("hps", "nash_mtl"),
    ],
)
def test_architecture_trains_and_records_its_size(tmp_path, model, weighting):
    cfg = compose_config(tmp_path, [*TINY, *STEPS, f"model={model}", f"weighting={weighting}"])
    metrics = train(cfg)
    assert {"test/seg/dice", "test/cls/balanced_acc"} <= set(metrics)
    saved = json.loads((Path(cfg.paths.output_dir) / METRICS_FILE).read_text())
    parts = [saved[f"model/params/{p}"] for p in ("shared", "seg", "cls")]
    assert sum(parts) == saved["model/params/total"] and parts[0] > 0
    assert saved["model/gflops_per_image"] > 0


@pytest.mark.parametrize("model", ["cross_stitch", "stl"])
def test_features_source_is_refused_without_a_shared_representation(tmp_path, model):
    cfg = compose_config(tmp_path, [*TINY, f"model={model}", "weighting=mgda_ub"])
    with pytest.raises(ValueError, match="weighting" if model == "stl" else "grad_source=params"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_stl_run_gives_every_single_task_baseline_and_no_shared_parameters(tmp_path):
    cfg = compose_config(tmp_path, [*TINY, *STEPS, "model=stl"])
    metrics = train(cfg)
    assert metrics["model/params/shared"] == 0
    assert (
        metrics["model/params/seg"] + metrics["model/params/cls"] == metrics["model/params/total"]
    )


def test_delta_m_against_the_stl_run_is_reported(tmp_path):
    stl = compose_config(tmp_path / "stl", [*TINY, *STEPS, "model=stl"])
    train(stl)
    stl_dir = stl.paths.output_dir
    cfg = compose_config(tmp_path / "mtl", [*TINY, *STEPS, f"delta_m.baselines={stl_dir}"])
    metrics = train(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / METRICS_FILE).read_text())
    per_metric = saved["test/delta_m/per_metric"]
    relative = {k: v for k, v in saved.items() if k.count("/") == 3 and "/delta_m/" in k}
    assert {"test/delta_m/seg/miou", "test/delta_m/cls/balanced_acc"} <= set(relative)
    assert per_metric == pytest.approx(sum(relative.values()) / len(relative))
    base = json.loads((Path(stl_dir) / METRICS_FILE).read_text())
    miou = 100 * (base["test/seg/miou"] - metrics["test/seg/miou"]) / base["test/seg/miou"]
    assert saved["test/delta_m/seg/miou"] == pytest.approx(miou)
