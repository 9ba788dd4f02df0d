"""A NaN loss names the task and step; `skip` keeps the weights finite, `stop` keeps the
last good checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import TINY, compose_config
from fixtures.faults import NaNImageAt, all_finite

from mtl.training.builders import build_callbacks, build_datamodule, build_module, build_trainer
from mtl.training.failure import FAILURE_FILE
from mtl.training.nonfinite import NonFiniteLossError, grads_finite, tensors_finite
from mtl.training.run import train

# 24 training slices, batch 8, drop_last: 3 steps an epoch
EPOCHS2 = [*TINY, "trainer.max_epochs=2", "logger=csv"]


def _fit(cfg, fault):
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, [*build_callbacks(cfg), fault], [])
    return module, trainer, datamodule


def test_skip_policy_skips_the_step_names_the_task_and_counts(tmp_path, caplog):
    cfg = compose_config(tmp_path, EPOCHS2)
    module, trainer, datamodule = _fit(cfg, NaNImageAt([1]))
    with caplog.at_level(logging.WARNING, logger="mtl.module"):
        trainer.fit(module, datamodule=datamodule)
    assert all_finite(module.net)
    assert module.nonfinite_skipped == 1
    assert trainer.global_step == 5  # 6 batches, one update skipped
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "non-finite loss in task(s) seg, cls at step 1" in message
    assert "skipped" in message


def test_skip_count_reaches_metrics_json(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            *EPOCHS2,
            "+callbacks.fault._target_=fixtures.faults.NaNImageAt",
            "+callbacks.fault.batches=[0,4]",
        ],
    )
    metrics = train(cfg)
    assert metrics["train/nonfinite_skipped"] == 2.0
    for key in ("test/loss", "test/seg/dice", "test/cls/acc"):  # trained weights stayed finite
        assert torch.isfinite(torch.tensor(metrics[key])), key


def test_stop_policy_raises_and_keeps_last_good_checkpoint(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            *EPOCHS2,
            "module.nonfinite=stop",
            "+callbacks.fault._target_=fixtures.faults.NaNImageAt",
            "+callbacks.fault.batches=[4]",  # second epoch, after epoch 0 was checkpointed
        ],
    )
    with pytest.raises(NonFiniteLossError, match=r"task\(s\) seg, cls at step 4 \(epoch 1"):
        train(cfg)
    run = Path(cfg.paths.output_dir)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0
    assert all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )
    failure = (run / FAILURE_FILE).read_text()
    assert "NonFiniteLossError" in failure and "step 4" in failure


def test_too_many_consecutive_skips_stop_the_run(tmp_path):
    cfg = compose_config(tmp_path, [*EPOCHS2, "module.max_nonfinite_skips=2"])
    module, trainer, datamodule = _fit(cfg, NaNImageAt([0, 1, 2]))
    with pytest.raises(NonFiniteLossError, match="max_nonfinite_skips=2"):
        trainer.fit(module, datamodule=datamodule)


@pytest.mark.parametrize("weighting", ["pcgrad", "upgrad"])
def test_gradient_methods_skip_nan_batches_too(tmp_path, weighting):
    cfg = compose_config(tmp_path, [*EPOCHS2, f"weighting={weighting}"])
    module, trainer, datamodule = _fit(cfg, NaNImageAt([2]))
    trainer.fit(module, datamodule=datamodule)
    assert all_finite(module.net)
    assert module.nonfinite_skipped == 1


def test_grads_finite_detects_nan_and_inf():
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    assert grads_finite([a, b])
    b.grad[1] = float("inf")
    assert not grads_finite([a, b])
    b.grad[1] = float("nan")
    assert not grads_finite([a, b])
    assert b.grad[0] == 1.0  # the check does not touch the gradients


def test_grads_finite_with_float64_default_dtype():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # what precision=64-true does
    try:
        p = torch.nn.Parameter(torch.zeros(2))
        p.grad = torch.tensor([1.0, float("nan")])
        assert not grads_finite([p])
    finally:
        torch.set_default_dtype(old)


def test_grads_finite_on_huge_but_finite_gradients():
    # their squared norm overflows: the fast norm check defers to the exact elementwise one
    p = torch.nn.Parameter(torch.zeros(4))
    p.grad = torch.full((4,), 1e30)
    assert grads_finite([p])
    p.grad[2] = float("-inf")
    assert not grads_finite([p])


def test_tensors_finite_is_exact():
    matrix, vector = torch.ones(2, 5), torch.ones(3)
    assert tensors_finite(matrix, vector)
    vector[1] = float("nan")
    assert not tensors_finite(matrix, vector)
    huge = torch.full((2, 5), 1e30)  # finite, but the squared norm overflows
    assert tensors_finite(huge, torch.ones(3))
    huge[0, 0] = float("inf")
    assert not tensors_finite(huge, torch.ones(3))
