"""Loader settings (`data.batch_size`, `eval_batch_size`, `num_workers`, ...) mean the same in
every data module and are checked before any data is generated or a file is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import InstantiationException

from mtl.data.base import MultiTaskDataModule
from mtl.training.builders import build_datamodule
from tests.conftest import compose_config

SYNTHETIC = ["ct", "scenes"]
DATA = [*SYNTHETIC, "nyuv2", "cityscapes", "nnunet"]


def _datamodule(tmp_path: Path, data: str, overrides: list[str]) -> MultiTaskDataModule:
    if data not in SYNTHETIC:  # a folder that does not exist: a bad setting must fail first
        overrides = [f"data.root={tmp_path / 'no_such_dataset'}", *overrides]
    return build_datamodule(compose_config(tmp_path, [f"data={data}", "sampler=none", *overrides]))


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.batch_size=0", "data.batch_size must be >= 1"),
        ("data.eval_batch_size=0", "data.eval_batch_size must be >= 1"),
        ("data.num_workers=-1", "data.num_workers must be >= 0"),
    ],
)
def test_a_bad_loader_setting_is_named_before_data_is_touched(tmp_path, data, override, key):
    # Hydra wraps the module's ValueError, keeping its message
    with pytest.raises(InstantiationException, match=key):
        _datamodule(tmp_path, data, [override])
    assert not (tmp_path / "data").exists()  # nothing generated or cached


@pytest.mark.parametrize("data", SYNTHETIC)
def test_loader_settings_reach_the_loaders(tmp_path, data):
    overrides = [
        "data.num_train=6",
        "data.num_val=5",
        "data.num_test=5",
        "data.batch_size=2",
        "data.eval_batch_size=5",
        "data.num_workers=0",
    ]
    if data == "ct":
        overrides.append("data.phantom.image_size=32")
    else:
        overrides += ["data.scene.image_height=24", "data.scene.image_width=32"]
    dm = _datamodule(tmp_path, data, overrides)
    dm.setup("fit")
    assert dm.train_dataloader().batch_size == 2
    assert dm.val_dataloader().batch_size == 5
    assert dm.persistent_workers is False  # only with workers, whatever the config says


def test_eval_batch_size_defaults_to_the_training_batch():
    dm = MultiTaskDataModule(batch_size=7, num_workers=2, persistent_workers=True)
    assert (dm.batch_size, dm.eval_batch_size, dm.persistent_workers) == (7, 7, True)
