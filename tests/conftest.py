"""Shared fixtures: a small, fast config composed through Hydra's public compose API."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# A tiny run: 64x64 slices, a small encoder, one epoch, no loggers.
TINY = [
    "data.num_train=24",
    "data.num_val=12",
    "data.num_test=12",
    "data.batch_size=8",
    "data.eval_batch_size=12",
    "data.phantom.image_size=64",
    "encoder.channels=[8,16,32]",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "extras.print_config=false",
    "extras.print_metrics=false",
    "logger=none",
]


def compose_config(
    tmp_path: Path, overrides: list[str] | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose `conf/<config_name>.yaml` with overrides; outputs and caches go to tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = compose(config_name=config_name, overrides=list(overrides or []))
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> DictConfig:
    return compose_config(tmp_path, TINY)
