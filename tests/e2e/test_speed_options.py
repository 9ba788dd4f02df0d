"""Speed options (issue 8): fused optimizers, `module.compile`, and per-step logging that
only runs on the steps Lightning hands to the loggers."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
from conftest import TINY, compose_config

from mtl.training import precision
from mtl.training.builders import build_datamodule, build_module, build_trainer


def _optimizer(cfg):
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    return module.optimizer_factory(params=module.parameters())


def test_optimizer_is_fused_unless_mixed_precision_clips(tmp_path, monkeypatch):
    assert _optimizer(compose_config(tmp_path, TINY)).defaults["fused"] is True
    clip = [*TINY, "trainer.gradient_clip_val=1.0"]
    # Lightning's mixed-precision plugin refuses to clip for a fused optimizer
    mixed = compose_config(tmp_path, [*clip, "trainer.precision=bf16-mixed"])
    assert _optimizer(mixed).defaults["fused"] is False
    full = compose_config(tmp_path, [*clip, "trainer.precision=32-true"])
    assert _optimizer(full).defaults["fused"] is True
    # precision=auto (the default) decides by what it resolves to on this machine
    for native, fused in ((True, False), (False, True)):
        monkeypatch.setattr(precision, "native_bf16", lambda device, native=native: native)
        assert _optimizer(compose_config(tmp_path, clip)).defaults["fused"] is fused


def test_gradient_diagnostics_reach_the_loggers_between_logging_steps(tmp_path):
    # diagnostics at steps 0, 2, 4, 6; Lightning logs at steps 3 and 7: the latest
    # diagnostics are kept until a logging step
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            "trainer.max_steps=8",
            "trainer.max_epochs=-1",
            "trainer.limit_val_batches=0",
            "trainer.log_every_n_steps=4",
            "module.diagnostics_every=2",
            "callbacks=none",
        ],
    )
    L.seed_everything(0)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    trainer = build_trainer(cfg, [], [L.pytorch.loggers.CSVLogger(tmp_path)])
    trainer.fit(module, datamodule=datamodule)
    with open(next(Path(tmp_path).rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    norms = [row for row in rows if row.get("train/grad_norm/seg")]
    assert [int(row["step"]) for row in norms] == [3, 7]
    assert all(row.get("train/lr") and row.get("train/weight/seg") for row in norms)


@pytest.mark.slow
def test_compiled_network_trains_a_step(tmp_path):
    cfg = compose_config(
        tmp_path,
        [
            *TINY,
            "module.compile=true",
            "trainer.max_steps=2",
            "trainer.limit_val_batches=0",
            "callbacks=none",
        ],
    )
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer = build_trainer(cfg, [], [])
    trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == 2
    # compiled in place: parameter names (and checkpoints) are the plain network's
    assert set(module.net.state_dict()) == set(before)
    assert any(not v.equal(before[k]) for k, v in module.net.state_dict().items())


def test_gradient_methods_need_every_parameter_shared_or_owned_by_one_task(tmp_path, monkeypatch):
    from mtl.models import HardParameterSharing

    def first_task_only(self, task):
        yield from (self.heads[task].parameters() if task == self.task_names[0] else ())

    monkeypatch.setattr(HardParameterSharing, "task_parameters", first_task_only)
    cfg = compose_config(tmp_path, [*TINY, "weighting=pcgrad"])
    with pytest.raises(ValueError, match="exactly once"):
        build_module(cfg, build_datamodule(cfg))
    build_module(compose_config(tmp_path, TINY), build_datamodule(cfg))  # EW does not care
