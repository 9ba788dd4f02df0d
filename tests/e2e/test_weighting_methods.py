"""Every weighting method trains the CT experiment (bf16 AMP on CPU), logs what it did, and
resumes from a checkpoint on the same trajectory as a run that never stopped."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import CONF_DIR, TINY, compose_config
from lightning.pytorch.plugins.precision import MixedPrecision

from mtl.training.builders import build_datamodule, build_module, build_trainer
from mtl.training.callbacks import GradientConflictLogger
from mtl.weighting import GradientWeighting, GramianWeighting

METHODS = sorted(p.stem for p in (Path(CONF_DIR) / "weighting").glob("*.yaml"))
FEATURE_METHODS = ["mgda_ub", "graddrop"]


def _fit(cfg, callbacks=(), ckpt_path=None):
    L.seed_everything(cfg.seed, workers=True)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, callbacks=list(callbacks), loggers=[])
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module, trainer


def test_every_method_has_a_config():
    expected = {
        *("ew", "fixed", "uw", "dwa", "rlw", "gradnorm", "famo", "gls", "db_mtl"),
        *("pcgrad", "gradvac", "cagrad", "mgda", "mgda_ub", "imtl", "aligned_mtl"),
        *("nash_mtl", "upgrad", "graddrop"),
    }
    assert expected <= set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_with_bf16_and_logs_weights(tmp_path, method):
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            f"weighting={method}",
            "trainer.precision=bf16-mixed",
            "trainer.max_steps=4",
            "trainer.max_epochs=-1",
            "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1",
            "module.diagnostics_every=2",
            "logger=csv",
            "callbacks=none",
        ],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer = build_trainer(cfg, callbacks=[], loggers=[L.pytorch.loggers.CSVLogger(tmp_path)])
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 4
    assert int(module.weighting.num_steps) == 4
    changed = [k for k, v in module.net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no parameter moved"
    assert all(torch.isfinite(p).all() for p in module.net.parameters())
    with open(next(Path(tmp_path).rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    logged = {k for row in rows for k, v in row.items() if v not in ("", None)}
    assert {"train/seg/loss_step", "train/cls/loss_epoch", "train/lr"} <= logged
    if not isinstance(module.weighting, GradientWeighting) or isinstance(
        module.weighting, GramianWeighting
    ):
        assert {"train/weight/seg", "train/weight/cls"} <= logged
    # per-task gradient norms and the conflict cosine, for every method
    assert {"train/grad_norm/seg", "train/grad_norm/cls", "train/grad_cos/seg~cls"} <= logged


def _fp16_trainer(cfg, init_scale: float):
    """fp16 autocast + GradScaler on CPU (Lightning would swap `16-mixed` for bf16 there)."""
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    return build_trainer(cfg, callbacks=[], loggers=[], plugins=[plugin]), scaler


@pytest.mark.parametrize("method", ["mgda", "mgda_ub", "pcgrad", "uw"])
def test_16_mixed_with_gradscaler_trains(tmp_path, method):
    """Per-task gradients are unscaled before the aggregation: the update equals the fp32
    one up to fp16 round-off, whatever the loss scale."""
    cfg = compose_config(
        tmp_path,
        [*TINY, f"weighting={method}", "trainer.precision=null", "trainer.max_steps=3"],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer, scaler = _fp16_trainer(cfg, init_scale=2.0**8)
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 3
    assert scaler.get_scale() == 2.0**8  # no overflow at this scale: no step skipped
    assert all(torch.isfinite(p).all() for p in module.net.parameters())


@pytest.mark.parametrize("method", ["ew", "mgda", "mgda_ub"])
def test_16_mixed_overflowing_step_is_skipped(tmp_path, method):
    """A loss scale that overflows fp16 gives inf gradients: GradScaler skips the update
    (parameters unchanged) and halves the scale, for linear, params and features steps."""
    cfg = compose_config(
        tmp_path,
        [*TINY, f"weighting={method}", "trainer.precision=null", "trainer.max_steps=1"],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    before = [p.detach().clone() for p in module.net.parameters()]
    trainer, scaler = _fp16_trainer(cfg, init_scale=2.0**60)
    trainer.fit(module, datamodule=datamodule)
    assert scaler.get_scale() == 2.0**59
    assert all(torch.equal(a, b) for a, b in zip(before, module.net.parameters(), strict=True))


def test_gradient_accumulation_aggregates_the_accumulated_gradients(tmp_path):
    """2 micro-batches of 4 with accumulation = 1 batch of 8 (exact for params mode: the
    aggregator sees the summed per-task gradients, not one direction per micro-batch)."""
    common = [
        *TINY,
        "weighting=mgda",
        "data.augment=null",
        "data.shuffle_train=false",
        "encoder.norm=group",
        "tasks.seg.batch_dice=false",
        "tasks.cls.dropout=0.0",
        "tasks.cls.class_weights=null",
        "optimizer=sgd",
        "optimizer.lr=0.001",
        "optimizer.momentum=0.9",
        "scheduler=none",
        "trainer.precision=32-true",
        "trainer.max_steps=3",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "callbacks=none",
    ]
    big, _ = _fit(compose_config(tmp_path / "big", [*common, "data.batch_size=8"]))
    acc, trainer = _fit(
        compose_config(
            tmp_path / "acc",
            [*common, "data.batch_size=4", "trainer.accumulate_grad_batches=2"],
        )
    )
    assert trainer.global_step == 3
    for key, value in big.net.state_dict().items():
        torch.testing.assert_close(acc.net.state_dict()[key], value, rtol=1e-4, atol=1e-6)


def test_features_source_refuses_accumulation(tmp_path):
    cfg = compose_config(
        tmp_path, [*TINY, "weighting=mgda_ub", "trainer.accumulate_grad_batches=2"]
    )
    with pytest.raises(ValueError, match="grad_source=features with accumulate_grad_batches"):
        build_module(cfg, build_datamodule(cfg))


def test_gradient_clipping_from_trainer_config(tmp_path):
    cfg = compose_config(
        tmp_path,
        [*TINY, "weighting=pcgrad", "trainer.gradient_clip_val=1e-4", "trainer.max_steps=1"],
    )
    norms = []

    class Spy(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            pass  # runs before the module's hook: the module clips after callbacks

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            grads = [p.grad.norm() for p in pl_module.parameters() if p.grad is not None]
            norms.append(float(torch.stack(grads).norm()))

    _fit(cfg, callbacks=[Spy()])
    assert norms and norms[0] <= 1e-4 * 1.01


def test_conflict_heat_map_is_drawn(tmp_path):
    cfg = compose_config(
        tmp_path,
        [*TINY, "weighting=ew", "trainer.max_steps=3", "module.diagnostics_every=2"],
    )
    _fit(cfg, callbacks=[GradientConflictLogger(every_n_steps=2, dirpath=str(tmp_path / "gc"))])
    drawn = sorted((tmp_path / "gc").glob("*.png"))
    assert [p.name for p in drawn] == ["step_000000.png", "step_000002.png"]
    assert drawn[0].stat().st_size > 5_000


RESUME = [
    *TINY,
    "data.augment=null",
    "data.shuffle_train=false",
    "tasks.cls.dropout=0.0",
    "trainer.precision=32-true",
    "trainer.limit_val_batches=0",
    "callbacks=none",
]


def _assert_same(actual, expected, key: str) -> None:
    """Tensors close (floats) or equal; `get_extra_state` dicts compared entry by entry."""
    if isinstance(expected, dict):
        assert set(actual) == set(expected), key
        for k in expected:
            _assert_same(actual[k], expected[k], f"{key}.{k}")
    elif isinstance(expected, torch.Tensor) and expected.is_floating_point():
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=key)
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), key
    else:
        assert actual == expected, key


class StopAfterEpochs(L.Callback):
    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


STATEFUL = ["uw", "dwa", "rlw", "famo", "gradnorm", "db_mtl", "gradvac", "nash_mtl", "pcgrad"]


@pytest.mark.slow
@pytest.mark.parametrize("method", STATEFUL)
def test_resume_continues_the_same_trajectory(tmp_path, method):
    """3 epochs straight = 2 epochs, checkpoint, resume for the third (DWA needs 3): the
    method's state (histories, EMAs, learned weights, step-seeded randomness) is saved."""
    straight, _ = _fit(
        compose_config(tmp_path / "a", [*RESUME, f"weighting={method}", "trainer.max_epochs=3"])
    )
    first, trainer = _fit(
        compose_config(tmp_path / "b", [*RESUME, f"weighting={method}", "trainer.max_epochs=3"]),
        callbacks=[StopAfterEpochs(2)],  # an interrupted 3-epoch run (same LR schedule)
    )
    ckpt = tmp_path / "two_epochs.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed, trainer = _fit(
        compose_config(tmp_path / "c", [*RESUME, f"weighting={method}", "trainer.max_epochs=3"]),
        ckpt_path=str(ckpt),
    )
    assert int(resumed.weighting.num_steps) == int(straight.weighting.num_steps) == 9
    resumed_state = resumed.state_dict()
    for key, value in straight.state_dict().items():
        _assert_same(resumed_state[key], value, key)

    # the method's own state was carried and used: it moved during the third epoch
    # (RLW and PCGrad have none beyond the step counter that seeds their draws)
    def differs(a, b) -> bool:
        if isinstance(a, dict):
            return any(differs(a[k], b[k]) for k in a)
        return not torch.equal(a, b) if isinstance(a, torch.Tensor) else a != b

    final = straight.weighting.state_dict()
    moved = [
        k
        for k, v in first.weighting.state_dict().items()
        if k not in ("num_steps", "solver_failures") and differs(v, final[k])
    ]
    assert moved or method in ("rlw", "pcgrad")
