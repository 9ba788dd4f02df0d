"""`trainer.precision: auto` picks bf16-mixed only where bf16 is native, and the run records it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, compose_config
from omegaconf import OmegaConf

from mtl.training import precision
from mtl.training.builders import build_datamodule, build_module, build_trainer
from mtl.training.run import RUN_CONFIG, train


@pytest.mark.parametrize(
    ("native", "expected"), [(True, "bf16-mixed"), (False, "32-true")], ids=["native", "emulated"]
)
def test_auto_follows_native_bf16(monkeypatch, native, expected):
    seen = []
    monkeypatch.setattr(precision, "native_bf16", lambda device: seen.append(device) or native)
    assert precision.resolve_precision("auto", "cpu") == expected
    assert seen == ["cpu"]


@pytest.mark.parametrize("value", ["32-true", "bf16-mixed", "16-mixed", None])
def test_explicit_precision_is_kept(monkeypatch, value):
    monkeypatch.setattr(precision, "native_bf16", lambda device: pytest.fail("not consulted"))
    assert precision.resolve_precision(value, "cpu") == value


@pytest.mark.parametrize(
    ("accelerator", "device"), [("cpu", "cpu"), ("gpu", "cuda"), ("cuda", "cuda"), (None, "cpu")]
)
def test_accelerator_names_the_device_checked(monkeypatch, accelerator, device):
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    assert precision.device_type_of(accelerator) == device


def test_default_config_is_auto_and_the_trainer_gets_a_concrete_precision(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    cfg = compose_config(tmp_path, TINY)
    assert cfg.trainer.precision == "auto"
    datamodule = build_datamodule(cfg)
    build_module(cfg, datamodule)
    trainer = build_trainer(cfg, callbacks=[], loggers=[])
    assert trainer.precision == "32-true"


def test_run_config_records_the_precision_used(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    cfg = compose_config(tmp_path, [*TINY, "test=false"])
    train(cfg)
    saved = OmegaConf.load(Path(cfg.paths.output_dir) / RUN_CONFIG)
    assert saved.trainer.precision == "32-true"
