"""`train.py` on tiny NYUv2 / Cityscapes folders in the published .npy layout, and on the
synthetic scenes: every dense task trains end to end and reports its metrics."""

from __future__ import annotations

import math

import pytest
from conftest import compose_config
from fixtures.npy_mtl import make_npy_dataset

from mtl.training.run import train

COMMON = [
    "data.batch_size=4",
    "encoder.channels=[8,16,32]",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "extras.print_config=false",
    "extras.print_metrics=false",
    "logger=none",
]
EXPECTED = {
    "seg": ("miou", "pixel_acc"),
    "depth": ("abs_err", "rel_err", "rmse", "delta1"),
    "normals": ("mean", "median", "within_11.25", "within_22.5", "within_30"),
    "boundary": ("f1", "precision", "recall"),
    "objects": ("map", "f1"),
}


def _check(metrics: dict, tasks: list[str]) -> None:
    for task in tasks:
        for name in EXPECTED[task]:
            value = metrics[f"test/{task}/{name}"]
            assert math.isfinite(value), f"test/{task}/{name} = {value}"


@pytest.mark.parametrize(
    "kind,tasks",
    [
        ("nyuv2", ["seg", "depth", "normals", "boundary", "objects"]),
        ("cityscapes", ["seg", "depth", "boundary"]),
    ],
)
def test_train_on_npy_layout(tmp_path, kind, tasks):
    root = make_npy_dataset(tmp_path / kind, kind, n_train=10, n_val=4, size=(32, 32))
    cfg = compose_config(
        tmp_path,
        [
            f"data={kind}",
            f"data.root={root}",
            "data.val_fraction=0.2",
            "data.num_workers=0",
            "data.persistent_workers=false",
            f"tasks=[{','.join(tasks)}]",
            "tasks.seg.background=false",
            "optimized_metric=val/seg/miou",
            *COMMON,
        ],
    )
    metrics = train(cfg)
    _check(metrics, tasks)
    assert "best_val/seg/miou" in metrics


def test_scenes_experiment_trains_every_dense_task(tmp_path):
    tasks = ["seg", "depth", "normals", "boundary", "objects"]
    cfg = compose_config(
        tmp_path,
        [
            "experiment=scenes_mtl",
            "data.num_train=16",
            "data.num_val=8",
            "data.num_test=8",
            "data.scene.image_height=48",
            "data.scene.image_width=64",
            f"tasks=[{','.join(tasks)}]",
            "decoder.decoder_channels=null",
            *COMMON,
        ],
    )
    metrics = train(cfg)
    _check(metrics, tasks)
    assert metrics["model/params/objects"] < metrics["model/params/depth"]  # pooled vs decoder
