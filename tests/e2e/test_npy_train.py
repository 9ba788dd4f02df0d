"""`train.py` on a tiny NYUv2-layout folder: the DataModule plugs into the model and loop."""

from __future__ import annotations

import math

from conftest import compose_config
from fixtures.npy_mtl import make_npy_dataset

from mtl.training.run import train


def test_train_on_nyuv2_layout(tmp_path):
    root = make_npy_dataset(tmp_path / "nyuv2", "nyuv2", n_train=10, n_val=4, size=(32, 32))
    cfg = compose_config(
        tmp_path,
        [
            "data=nyuv2",
            f"data.root={root}",
            "data.targets=[seg]",
            "data.val_fraction=0.2",
            "data.batch_size=4",
            "data.num_workers=0",
            "data.persistent_workers=false",
            "tasks=[seg]",
            "encoder.channels=[8,16,32]",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "extras.print_config=false",
            "extras.print_metrics=false",
            "logger=none",
        ],
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["test/seg/miou"]) and "best_val/seg/dice" in metrics
