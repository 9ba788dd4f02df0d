"""The synthetic CT data module: splits, determinism, normalisation cache and checkpoint state."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtl.data.ct import SyntheticCTDataModule
from mtl.data.normalization import CTFingerprint

SMALL = dict(num_train=24, num_val=8, num_test=8, phantom={"image_size": 64}, batch_size=4)


def test_splits_are_disjoint_fixed_by_seed_and_cover_the_pool():
    dm = SyntheticCTDataModule(seed=3, **SMALL)
    splits = dm.split_indices()
    all_indices = np.concatenate(list(splits.values()))
    assert len(set(all_indices.tolist())) == len(all_indices) == 40
    assert {k: len(v) for k, v in splits.items()} == {"train": 24, "val": 8, "test": 8}
    again = SyntheticCTDataModule(seed=3, **SMALL).split_indices()
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = SyntheticCTDataModule(seed=4, **SMALL).split_indices()
    assert not np.array_equal(splits["train"], other["train"])


def test_split_images_are_distinct_and_samples_deterministic(tmp_path):
    dm = SyntheticCTDataModule(seed=0, cache_dir=str(tmp_path), **SMALL)
    dm.setup("fit")
    dm.setup("test")
    hashes = {
        split: {arr.tobytes() for arr in dm.arrays[split].images}
        for split in ("train", "val", "test")
    }
    assert not hashes["train"] & hashes["val"] and not hashes["train"] & hashes["test"]
    twin = SyntheticCTDataModule(seed=0, cache_dir=str(tmp_path), **SMALL)
    twin.setup("fit")
    a, b = dm.dataset("train")[5], twin.dataset("train")[5]
    assert torch.equal(a["image"], b["image"]) and torch.equal(
        a["targets"]["seg"], b["targets"]["seg"]
    )


def test_items_have_the_batch_layout_and_normalised_foreground(tmp_path):
    dm = SyntheticCTDataModule(seed=0, cache_dir=str(tmp_path), **SMALL)
    dm.setup("fit")
    item = dm.dataset("train")[0]
    assert item["image"].shape == (1, 64, 64) and item["image"].dtype == torch.float32
    assert item["targets"]["seg"].shape == (64, 64) and item["targets"]["seg"].dtype == torch.long
    assert item["targets"]["cls"].ndim == 0
    assert item["has_target"] == {"seg": True, "cls": True}
    ds = dm.dataset("train")
    fg = torch.cat([ds[i]["image"][0][ds[i]["targets"]["seg"] > 0] for i in range(len(ds))])
    assert abs(fg.mean().item()) < 0.1 and abs(fg.std().item() - 1) < 0.15  # z-scored
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 64, 64) and batch["has_target"]["seg"].dtype == torch.bool


def test_fingerprint_is_cached_once_and_reused(tmp_path):
    dm = SyntheticCTDataModule(seed=0, cache_dir=str(tmp_path), **SMALL)
    dm.setup("fit")
    path = dm.fingerprint_path
    assert path.is_file()
    stored = json.loads(path.read_text())
    assert stored["lower"] < stored["mean"] < stored["upper"]
    # a later run reads the cache instead of recomputing: prove it by planting other numbers
    planted = CTFingerprint(lower=-100.0, upper=300.0, mean=50.0, std=80.0, num_voxels=1)
    planted.save(path)
    again = SyntheticCTDataModule(seed=0, cache_dir=str(tmp_path), **SMALL)
    again.setup("fit")
    assert again.fingerprint == planted


def test_checkpoint_state_restores_the_training_normalisation(tmp_path):
    trained = SyntheticCTDataModule(seed=0, cache_dir=str(tmp_path / "a"), **SMALL)
    trained.setup("fit")
    state = trained.state_dict()
    fresh = SyntheticCTDataModule(seed=0, cache_dir=str(tmp_path / "b"), **SMALL)
    fresh.setup("test")
    fresh.fingerprint = CTFingerprint(lower=0.0, upper=1.0, mean=0.5, std=1.0, num_voxels=1)
    fresh.load_state_dict(state)
    assert fresh.fingerprint == trained.fingerprint
    assert torch.equal(fresh.dataset("test")[0]["image"], trained.dataset("test")[0]["image"])


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"num_train": 0}, "num_train"),
        ({"batch_size": 0}, "batch_size"),
        ({"phantom": {"image_size": 8}}, "image_size"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SyntheticCTDataModule(**{**SMALL, **kwargs})
