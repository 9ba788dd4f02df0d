"""NYUv2 / Cityscapes in the MTAN/LibMTL `.npy` layout: batch format, splits, derived targets,
resizing and the errors for every kind of broken folder."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from fixtures.npy_mtl import make_npy_dataset
from hydra.utils import instantiate

from mtl.data.dense_resize import resize_depth, resize_labels, resize_normals
from mtl.data.npy_layout import NpyDataError
from mtl.data.npy_mtl import (
    CITYSCAPES_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    NYUV2_CLASSES,
    CityscapesDataModule,
    NYUv2DataModule,
)
from mtl.data.targets import semantic_boundaries

SIZE = (16, 24)


@pytest.fixture
def nyu(tmp_path: Path) -> Path:
    return make_npy_dataset(tmp_path / "nyuv2", "nyuv2", n_train=10, n_val=4, size=SIZE)


def _raw(root: Path, split: str, folder: str, index: int) -> np.ndarray:
    return np.load(root / split / folder / f"{index}.npy")


# -- batch format ----------------------------------------------------------------------------
def test_nyuv2_items_follow_the_target_contract(nyu):
    dm = NYUv2DataModule(root=str(nyu), batch_size=4)
    assert set(dm.target_specs) == {"seg", "boundary", "objects", "depth", "normals"}
    assert dm.target_specs["seg"].class_names == NYUV2_CLASSES and dm.in_channels == 3
    assert dm.target_specs["objects"].kind == "multilabel"
    dm.setup("fit")
    item = dm.dataset("test")[2]
    assert item["index"] == 2
    image, label = _raw(nyu, "val", "image", 2), _raw(nyu, "val", "label", 2)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = (torch.from_numpy(image) - mean) / std  # channels last
    assert item["image"].shape == (3, *SIZE) and item["image"].dtype == torch.float32
    assert torch.allclose(item["image"], expected.permute(2, 0, 1), atol=1e-6)

    seg = item["targets"]["seg"]
    assert seg.shape == SIZE and seg.dtype == torch.int64
    assert (seg[torch.from_numpy(label == -1)] == 255).all()
    assert torch.equal(
        seg[torch.from_numpy(label >= 0)], torch.from_numpy(label[label >= 0]).long()
    )

    depth = item["targets"]["depth"]
    assert depth.shape == (1, *SIZE) and depth.dtype == torch.float32
    assert torch.equal(depth[0], torch.from_numpy(_raw(nyu, "val", "depth", 2)[..., 0]))
    assert (depth == 0).any()  # invalid pixels kept as 0
    normals = item["targets"]["normals"]
    assert torch.equal(normals, torch.from_numpy(_raw(nyu, "val", "normal", 2)).permute(2, 0, 1))

    boundary = item["targets"]["boundary"]
    assert boundary.shape == (1, *SIZE) and boundary.dtype == torch.float32
    assert torch.equal(boundary, semantic_boundaries(seg[None])[0])
    present = np.isin(np.arange(13), label[label >= 0])
    assert torch.equal(item["targets"]["objects"], torch.from_numpy(present).float())
    assert all(item["has_target"].values())

    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, *SIZE)
    assert batch["targets"]["objects"].shape == (4, 13)
    assert batch["has_target"]["seg"].dtype == torch.bool and batch["has_target"]["seg"].shape == (
        4,
    )


def test_cityscapes_has_seven_categories_no_normals_and_reads_label_7(tmp_path):
    root = make_npy_dataset(tmp_path / "cs", "cityscapes", n_train=6, n_val=3, label_dir="label_7")
    dm = CityscapesDataModule(root=str(root), val_fraction=0.2)
    assert set(dm.target_specs) == {"seg", "boundary", "objects", "depth"}
    assert dm.target_specs["seg"].class_names == CITYSCAPES_CLASSES
    assert dm.modalities == ("image", "label", "depth")
    item = dm.dataset("train")[0]
    assert set(item["targets"]) == {"seg", "boundary", "objects", "depth"}
    assert item["targets"]["objects"].shape == (7,)


def test_targets_follow_the_folders_on_disk_and_the_targets_option(nyu):
    for split in ("train", "val"):
        for path in (nyu / split / "normal").iterdir():
            path.unlink()
        (nyu / split / "normal").rmdir()
    dm = NYUv2DataModule(root=str(nyu))
    assert "normals" not in dm.target_specs and "normal" not in dm.modalities
    only = NYUv2DataModule(root=str(nyu), targets=["depth"])
    assert set(only.target_specs) == {"depth"} and only.modalities == ("image", "depth")
    assert set(only.dataset("val")[0]["targets"]) == {"depth"}
    with pytest.raises(ValueError, match=r"\['normals'\] need folders \['normal'\]"):
        NYUv2DataModule(root=str(nyu), targets=["seg", "normals"])


def test_objects_respect_the_minimum_pixel_count(nyu):
    label = _raw(nyu, "train", "label", 0)
    counts = np.bincount(label[label >= 0].astype(int), minlength=13)
    threshold = int(np.sort(counts[counts > 0])[0]) + 1  # drops the rarest present class
    dm = NYUv2DataModule(root=str(nyu), targets=["objects"], objects_min_pixels=threshold)
    objects = dm.dataset("train").converter(dm._reader("train").read(0))["targets"]["objects"]
    assert torch.equal(objects, torch.from_numpy(counts >= threshold).float())


def test_boundary_width_is_configurable(nyu):
    thin = NYUv2DataModule(root=str(nyu), targets=["boundary"], boundary_width=1)
    wide = NYUv2DataModule(root=str(nyu), targets=["boundary"], boundary_width=2)
    a = thin.dataset("test")[0]["targets"]["boundary"]
    b = wide.dataset("test")[0]["targets"]["boundary"]
    assert ((b == 1).sum() > (a == 1).sum()) and ((a == 1) <= (b == 1)).all()


def test_unlabelled_sample_has_no_seg_target(nyu):
    np.save(nyu / "val" / "label" / "1.npy", np.full(SIZE, -1, dtype=np.float32))
    item = NYUv2DataModule(root=str(nyu)).dataset("test")[1]
    assert not item["has_target"]["seg"] and not item["has_target"]["objects"]
    assert item["has_target"]["depth"] and (item["targets"]["seg"] == 255).all()


# -- splits ----------------------------------------------------------------------------------
def test_val_is_a_seeded_held_out_part_of_train_and_test_is_their_val(nyu):
    dm = NYUv2DataModule(root=str(nyu), val_fraction=0.3, seed=1)
    splits = dm.split_indices()
    assert len(splits["val"]) == 3 and len(splits["train"]) == 7
    assert not set(splits["train"]) & set(splits["val"])
    assert sorted([*splits["train"], *splits["val"]]) == list(range(10))
    assert list(splits["test"]) == [0, 1, 2, 3]
    again = NYUv2DataModule(root=str(nyu), val_fraction=0.3, seed=1).split_indices()
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    half = NYUv2DataModule(root=str(nyu), val_fraction=0.25).split_indices()
    assert len(half["val"]) == 3  # 2.5 rounds half up, as 79.5 -> 80 for NYUv2
    others = [NYUv2DataModule(root=str(nyu), val_fraction=0.3, seed=s) for s in range(2, 6)]
    assert any(not np.array_equal(o.split_indices()["val"], splits["val"]) for o in others)
    # val reads their train folder, test their val folder
    val_item = dm.dataset("val")[0]
    train_image = _raw(nyu, "train", "image", int(splits["val"][0]))
    assert np.allclose(
        val_item["image"].permute(1, 2, 0).numpy() * IMAGENET_STD + IMAGENET_MEAN,
        train_image,
        atol=1e-5,
    )


def test_val_fraction_zero_needs_the_explicit_test_as_val_option(nyu):
    with pytest.raises(ValueError, match="val_from_test=true"):
        NYUv2DataModule(root=str(nyu), val_fraction=0.0)
    with pytest.raises(ValueError, match=r"needs data.val_fraction=0 \(got 0.1\)"):
        NYUv2DataModule(root=str(nyu), val_fraction=0.1, val_from_test=True)
    with pytest.warns(UserWarning, match="TEST split"):
        dm = NYUv2DataModule(root=str(nyu), val_fraction=0.0, val_from_test=True)
    splits = dm.split_indices()
    assert len(splits["train"]) == 10 and np.array_equal(splits["val"], splits["test"])
    assert torch.equal(dm.dataset("val")[1]["image"], dm.dataset("test")[1]["image"])


# -- resizing --------------------------------------------------------------------------------
def test_resize_on_load_gives_the_requested_size(nyu):
    dm = NYUv2DataModule(root=str(nyu), resize=[8, 12], batch_size=2)
    assert dm.input_shape == (3, 8, 12)
    item = dm.dataset("train")[0]
    assert item["image"].shape == (3, 8, 12)
    assert {k: tuple(v.shape) for k, v in item["targets"].items()} == {
        "seg": (8, 12),
        "boundary": (1, 8, 12),
        "objects": (13,),
        "depth": (1, 8, 12),
        "normals": (3, 8, 12),
    }
    label = _raw(nyu, "train", "label", 0)
    stored = {int(v) for v in np.unique(label) if v >= 0}
    assert set(item["targets"]["seg"].unique().tolist()) <= stored | {255}
    norms = item["targets"]["normals"].norm(dim=0)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert NYUv2DataModule(root=str(nyu)).input_shape == (3, *SIZE)


@pytest.mark.parametrize("mode", ["nearest", "masked"])
def test_depth_resize_never_blends_valid_with_invalid(mode):
    depth = torch.zeros(1, 16, 16)
    depth[:, :, 8:] = 5.0  # a hole on the left
    depth[:, ::2, 9::2] = 0.0  # and scattered invalid pixels on the right
    for size in ((8, 8), (5, 7), (32, 32)):
        out = resize_depth(depth, size, mode)
        valid = out[out > 0]
        assert valid.numel() > 0 and torch.allclose(valid, torch.full_like(valid, 5.0))
        assert (out[..., : size[1] // 3] == 0).all()  # the hole stays invalid


def test_masked_depth_averages_valid_pixels_only():
    depth = torch.tensor([[[2.0, 4.0, 0.0, 0.0], [2.0, 4.0, 0.0, 6.0]]])
    out = resize_depth(depth, (1, 2), "masked")
    assert torch.allclose(out, torch.tensor([[[3.0, 6.0]]]))


def test_label_and_normal_resize():
    labels = torch.tensor([[0, 0, 1, 1], [-1, -1, 2, 2]])
    assert torch.equal(resize_labels(labels, (2, 2)), torch.tensor([[0, 1], [-1, 2]]))
    normals = torch.zeros(3, 4, 4)
    normals[2, :, 2:] = -1.0  # right half faces the camera, left half invalid (zero)
    normals[0, 0, 3] = 1.0
    out = resize_normals(normals, (2, 2))
    norms = out.norm(dim=0)
    assert torch.allclose(norms[:, 1], torch.ones(2)) and (out[:, :, 0] == 0).all()


# -- errors ----------------------------------------------------------------------------------
def test_missing_root_says_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"never downloads.*lorenmt/mtan") as err:
        NYUv2DataModule(root=str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(err.value)


def test_root_one_level_too_high_suggests_the_right_folder(tmp_path):
    make_npy_dataset(tmp_path / "nyuv2", "nyuv2", n_train=2, n_val=1)
    with pytest.raises(FileNotFoundError, match=r"did you mean data.root=.*nyuv2"):
        NYUv2DataModule(root=str(tmp_path), val_fraction=0.5)


def test_missing_split_or_modality_folder_is_named(nyu):
    for path in (nyu / "val" / "depth").iterdir():
        path.unlink()
    (nyu / "val" / "depth").rmdir()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{nyu / 'val' / 'depth'} is missing")):
        NYUv2DataModule(root=str(nyu))
    os.rename(nyu / "val", nyu / "test")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"split folder {nyu / 'val'} is missing")
    ):
        NYUv2DataModule(root=str(nyu))


def test_explicit_label_dir_must_exist(tmp_path):
    root = make_npy_dataset(tmp_path / "cs", "cityscapes", n_train=4, n_val=2)
    with pytest.raises(FileNotFoundError, match=r"label_19 .*holds \['depth', 'image', 'label'\]"):
        CityscapesDataModule(root=str(root), label_dir="label_19")


def _setup_error(root: Path, exc: type[Exception] = NpyDataError, **kwargs) -> str:
    dm = NYUv2DataModule(root=str(root), **kwargs)
    with pytest.raises(exc) as err:
        dm.setup("fit")
    return str(err.value)


def test_deleted_file_is_named(nyu):
    (nyu / "train" / "depth" / "3.npy").unlink()
    assert f"{nyu / 'train' / 'depth' / '3.npy'} is missing" in _setup_error(nyu)


def test_differing_counts_name_the_folders(nyu):
    (nyu / "val" / "normal" / "3.npy").unlink()
    message = _setup_error(nyu)
    assert "file counts differ" in message and "normal/: 3" in message
    assert str(nyu / "val" / "normal" / "3.npy") in message


def test_non_consecutive_or_misnamed_files(nyu):
    for folder in ("image", "label", "depth", "normal"):
        os.rename(nyu / "train" / folder / "9.npy", nyu / "train" / folder / "12.npy")
    assert f"{nyu / 'train' / 'image' / '9.npy'} is missing" in _setup_error(nyu)
    os.rename(nyu / "train" / "image" / "12.npy", nyu / "train" / "image" / "img_9.npy")
    assert "unexpected file" in _setup_error(nyu) and "img_9.npy" in _setup_error(nyu)


def test_truncated_file_is_named(nyu):
    path = nyu / "train" / "normal" / "4.npy"
    path.write_bytes(path.read_bytes()[:300])
    message = _setup_error(nyu)
    assert f"cannot load {path}" in message and "truncated" in message


def test_wrong_shape_or_channels_are_named(nyu):
    path = nyu / "train" / "image" / "2.npy"
    np.save(path, np.zeros((*SIZE, 4), dtype=np.float32))
    assert f"{path} has shape (16, 24, 4) but image files must be H x W x 3" in _setup_error(nyu)
    np.save(path, np.zeros((*SIZE, 3), dtype=np.float32))
    depth = nyu / "val" / "depth" / "1.npy"
    np.save(depth, np.ones(SIZE, dtype=np.float32))  # H x W instead of H x W x 1
    assert f"{depth} has shape (16, 24) but depth files must be H x W x 1" in _setup_error(nyu)
    np.save(depth, np.ones((8, 24, 1), dtype=np.float32))
    assert f"{depth} is 8 x 24 but the samples" in _setup_error(nyu)


def _read_error(root: Path, split: str, index: int) -> str:
    """Values are checked as samples are read too (setup's pass is off here; see
    tests/data/test_bad_data.py for that pass)."""
    dm = NYUv2DataModule(root=str(root), scan_values=False)
    dm.setup("fit")
    with pytest.raises(NpyDataError) as err:
        dm.dataset(split)[index]
    return str(err.value)


def test_image_values_outside_unit_range_are_named(nyu):
    path = nyu / "val" / "image" / "0.npy"
    np.save(path, np.full((*SIZE, 3), 255.0, dtype=np.float32))
    message = _read_error(nyu, "test", 0)
    assert str(path) in message and "[0, 1]" in message


def test_label_out_of_range_is_named(nyu):
    path = nyu / "val" / "label" / "2.npy"
    label = np.zeros(SIZE, dtype=np.float32)
    label[3, 3] = 13.0
    np.save(path, label)
    message = _read_error(nyu, "test", 2)
    assert str(path) in message and "[-1, 13)" in message
    label[3, 3] = 2.5
    np.save(path, label)
    assert "non-integer" in _read_error(nyu, "test", 2)


def test_file_removed_after_setup_is_named_when_read(nyu):
    dm = NYUv2DataModule(root=str(nyu))
    dm.setup("fit")
    (nyu / "val" / "label" / "0.npy").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(nyu / "val" / "label" / "0.npy"))):
        dm.dataset("test")[0]


def test_in_memory_reads_everything_once_and_gives_the_same_items(nyu):
    lazy = NYUv2DataModule(root=str(nyu)).dataset("train")[3]
    dm = NYUv2DataModule(root=str(nyu), in_memory=True)
    eager = dm.dataset("train")
    for folder in ("image", "label", "depth", "normal"):
        for path in (nyu / "train" / folder).iterdir():
            path.unlink()
    item = eager[3]
    assert torch.equal(item["image"], lazy["image"])
    assert all(torch.equal(item["targets"][k], lazy["targets"][k]) for k in lazy["targets"])


# -- config ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kind", [("nyuv2", "nyuv2"), ("cityscapes", "cityscapes")])
def test_hydra_configs_instantiate(tmp_path, name, kind):
    root = make_npy_dataset(tmp_path / kind, kind, n_train=4, n_val=2)
    cfg = compose_config(tmp_path, [f"data={name}", f"data.root={root}", "data.val_fraction=0.25"])
    dm = instantiate(cfg.data, _convert_="all")
    assert type(dm) is {"nyuv2": NYUv2DataModule, "cityscapes": CityscapesDataModule}[kind]
    assert dm.batch_size == 8 and dm.augment.hflip_p == 0.5  # MTAN-style zoom + flip
    assert ("normals" in dm.target_specs) == (kind == "nyuv2")
