"""`train` on a tiny nnU-Net raw dataset written with nibabel: 2.5D slices, seg + a cls derived
from the mask, one case without a mask (partial labels); then `evaluate` of the checkpoint
reproduces the test metrics with the checkpointed CT normalisation."""

from __future__ import annotations

import math

import pytest
from conftest import compose_config
from fixtures.nnunet import make_nnunet_dataset

from mtl.training.run import evaluate, train

TRAIN = [
    "data=nnunet",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "data.num_workers=0",
    "data.val_fraction=0.25",
    "data.context=1",
    "data.cls_rule={kind: has_label, label: lesion}",
    "tasks=[seg,cls]",
    "encoder.channels=[8,16,32]",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "extras.print_config=false",
    "extras.print_metrics=false",
    "logger=none",
]


def test_train_and_evaluate_on_nnunet_raw_dataset(tmp_path):
    root = make_nnunet_dataset(tmp_path / "raw", n_cases=4, shape=(32, 32, 10), without_mask=[3])
    cfg = compose_config(tmp_path, [*TRAIN, f"data.root={root}"])
    metrics = train(cfg)
    for name in ("test/seg/dice", "test/seg/miou", "test/cls/balanced_acc", "test/cls/auroc"):
        assert math.isfinite(metrics[name]), f"{name} = {metrics[name]}"
    assert "best_val/seg/dice" in metrics
    assert (root / "mtl_cache").is_dir()  # cached beside the data

    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ev = compose_config(
        tmp_path / "eval",
        [
            f"ckpt_path={ckpt}",
            "trainer.accelerator=cpu",
            "logger=none",
            "extras.print_metrics=false",
        ],
        config_name="eval",
    )
    evaluated = evaluate(ev)
    for key in ("test/seg/dice", "test/cls/balanced_acc"):
        assert evaluated[key] == pytest.approx(metrics[key], rel=1e-5, abs=1e-6), key
