"""nnU-Net raw-format DataModule: slices, splits, resampling, 2.5D, fingerprint and cache,
classification labels, partial labels, PNG input and the errors on bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from fixtures.nnunet import affine_for, make_nnunet_dataset, save_nifti
from PIL import Image

from mtl.data.nnunet import NnUNetDataModule
from mtl.data.nnunet_layout import NnUNetDataError
from mtl.data.normalization import CTFingerprint
from mtl.data.targets import IGNORE_INDEX

SHAPE = (32, 32, 12)  # X x Y x Z
RULE = {"kind": "has_label", "label": "lesion"}


def make_dm(root: Path, **kwargs) -> NnUNetDataModule:
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("cache_dir", str(root.parent / "cache"))
    dm = NnUNetDataModule(str(root), **kwargs)
    dm.setup("fit")
    return dm


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_nnunet_dataset(tmp_path, n_cases=4, shape=SHAPE)


def case_names(dm: NnUNetDataModule, split: str) -> list[str]:
    return [entry.name for entry in dm.entries[split]]


def cls_by_case(dm: NnUNetDataModule) -> dict[str, np.ndarray]:
    """Per-slice class labels of every training and validation case."""
    out = {}
    for split in ("train", "val"):
        out.update(zip(case_names(dm, split), dm.cls_labels[split], strict=True))
    return out


# -- slices and splits -----------------------------------------------------------------------
def test_slices_per_case_and_splits_by_case(dataset):
    dm = make_dm(dataset, val_fraction=0.25)
    splits = {s: set(case_names(dm, s)) for s in ("train", "val", "test")}
    assert splits["test"] == {"test_000", "test_001"}  # imagesTs is labelled: it is the test set
    assert len(splits["val"]) == 1 and len(splits["train"]) == 3
    assert (
        not (splits["train"] & splits["val"])
        and not (splits["train"] | splits["val"]) & (splits["test"])
    )
    for split in splits:
        ds = dm.dataset(split)
        assert len(ds) == SHAPE[2] * len(splits[split])  # every slice of every case
        cases_of_items = {dm.entries[split][ds[i]["case_index"]].name for i in range(len(ds))}
        assert cases_of_items == splits[split]
    assert dm.input_shape == (1, 32, 32)  # target spacing null = median 0.8 mm = as stored


def test_test_split_from_training_cases_without_labelsTs(tmp_path):
    root = make_nnunet_dataset(tmp_path, n_cases=6, shape=(16, 16, 4), with_test=False)
    a = make_dm(root, val_fraction=0.2, test_fraction=0.2, seed=1)
    names = [set(case_names(a, s)) for s in ("train", "val", "test")]
    assert [len(n) for n in names] == [4, 1, 1]
    assert set.union(*names) == {f"case_{i:03d}" for i in range(6)}
    b = make_dm(root, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert case_names(a, "test") == case_names(b, "test")  # the seed fixes the split


def test_batch_format(dataset):
    dm = make_dm(dataset, cls_rule=RULE)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["targets"]["seg"].shape == (4, 32, 32)
    assert batch["targets"]["seg"].dtype == torch.int64
    assert batch["targets"]["cls"].shape == (4,)
    assert batch["has_target"]["seg"].dtype == torch.bool


# -- resampling ------------------------------------------------------------------------------
def test_resampling_to_target_spacing(tmp_path):
    # x spacing 0.5 mm, y 1.0 mm: rows run along y, columns along x
    root = make_nnunet_dataset(tmp_path, n_cases=3, shape=SHAPE, spacing=(0.5, 1.0, 2.5))
    dm = make_dm(root, target_spacing=[2.0, 1.0], val_fraction=0.34)
    assert dm.input_shape == (1, 16, 16)  # rows 32 * 1.0 / 2.0, columns 32 * 0.5 / 1.0
    item = dm.dataset("train")[6]
    assert item["image"].shape == (1, 16, 16)
    assert set(item["targets"]["seg"].unique().tolist()) <= {0, 1, 2}  # nearest: labels only
    assert (item["targets"]["seg"] > 0).any()

    median = make_dm(root, val_fraction=0.34, cache_dir=str(tmp_path / "c2"))
    assert median.resolved_spacing == (1.0, 0.5)  # (row, column) median of the cases
    assert median.input_shape == (1, 32, 32)


def test_patch_size_pads_with_minimum_and_crops(dataset):
    dm = make_dm(dataset, patch_size=[40, 24])
    item = dm.dataset("train")[6]
    image, seg = item["image"], item["targets"]["seg"]
    assert image.shape == (1, 40, 24) and seg.shape == (40, 24)
    assert torch.all(image[:, :4] == image.min()) and torch.all(image[:, -4:] == image.min())
    assert torch.all(seg[:4] == 0) and torch.all(seg[-4:] == 0)


# -- 2.5D ------------------------------------------------------------------------------------
def test_context_stacks_neighbouring_slices_with_replicated_edges(dataset):
    flat = make_dm(dataset)
    stacked = make_dm(dataset, context=1)
    assert stacked.in_channels == 3 and stacked.input_shape == (3, 32, 32)
    ds_flat, ds_stacked = flat.dataset("train"), stacked.dataset("train")
    z = 5
    item = ds_stacked[z]
    for channel, neighbour in enumerate((z - 1, z, z + 1)):
        assert torch.equal(item["image"][channel], ds_flat[neighbour]["image"][0])
    first = ds_stacked[0]["image"]  # slice 0: its missing lower neighbour repeats the edge
    assert torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])
    last = ds_stacked[SHAPE[2] - 1]["image"]
    assert torch.equal(last[1], last[2])


def test_two_channels_in_context_order_and_ignore_label(tmp_path):
    root = make_nnunet_dataset(tmp_path, n_cases=3, shape=(16, 16, 5), with_test=False)
    description = json.loads((root / "dataset.json").read_text())
    description["channel_names"] = {"0": "CT", "1": "T2"}  # T2: z-scored per image
    description["labels"]["ignore"] = 3
    (root / "dataset.json").write_text(json.dumps(description))
    affine = affine_for((0.8, 0.8, 2.5))
    for case in range(3):
        ct = nib.load(root / "imagesTr" / f"case_{case:03d}_0000.nii.gz").get_fdata()
        save_nifti(root / "imagesTr" / f"case_{case:03d}_0001.nii.gz", 2 * ct + 5, affine)
        mask_path = root / "labelsTr" / f"case_{case:03d}.nii.gz"
        mask = np.asarray(nib.load(mask_path).dataobj)
        mask[2, 3, 2] = 3  # voxel x=2, y=3 of slice 2
        save_nifti(mask_path, mask, affine)

    flat = make_dm(root, val_fraction=0.34, test_fraction=0.34)
    stacked = make_dm(root, val_fraction=0.34, test_fraction=0.34, context=1)
    assert flat.in_channels == 2 and stacked.in_channels == 6
    assert list(flat.fingerprints) == [0]  # only the CT channel has a fingerprint
    ds_flat, ds_stacked = flat.dataset("train"), stacked.dataset("train")
    item = ds_stacked[2]
    neighbours = torch.cat([ds_flat[z]["image"] for z in (1, 2, 3)])  # z-1: c0 c1, z: c0 c1, ..
    assert torch.equal(item["image"], neighbours)
    t2 = torch.stack([ds_flat[z]["image"][1] for z in range(5)])
    assert abs(float(t2.mean())) < 1e-4  # per-case z-score
    assert item["targets"]["seg"][3, 2] == IGNORE_INDEX  # 'ignore' -> 255
    assert flat.target_specs["seg"].class_names == ("background", "organ", "lesion")


# -- fingerprint and cache -------------------------------------------------------------------
def test_fingerprint_computed_once_and_cached(dataset, monkeypatch):
    first = make_dm(dataset)
    files = list(first.cache.folder.glob("fingerprint_*.json"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    fp = first.fingerprints[0]
    assert fp.lower < fp.mean < fp.upper and 30 < fp.mean < 70  # organ/lesion HU

    def fail(*args, **kwargs):
        raise AssertionError("the fingerprint was recomputed")

    monkeypatch.setattr(CTFingerprint, "from_images", fail)
    second = make_dm(dataset)
    assert second.fingerprints == first.fingerprints
    assert files[0].stat().st_mtime_ns == mtime


def test_cache_reused_and_invalidated_by_a_changed_source(dataset):
    first = make_dm(dataset)
    assert len(first.cache.built) == 6 and not first.cache.reused
    second = make_dm(dataset)
    assert not second.cache.built and len(second.cache.reused) == 6

    # rewrite one image (new content and mtime): only that case is preprocessed again
    path = dataset / "imagesTr" / "case_001_0000.nii.gz"
    stale = entry_named(second, "case_001")
    volume = nib.load(path).get_fdata().astype(np.int16) + 100
    save_nifti(path, volume, affine_for((0.8, 0.8, 2.5)))
    later = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    third = make_dm(dataset)
    assert third.cache.built == ["case_001"] and len(third.cache.reused) == 5
    assert not stale.image_path.exists()  # the stale arrays are deleted
    # cached layout: Z x C x H x W with rows along y (the spacing is unchanged: no resampling)
    expected = volume.transpose(2, 1, 0)[:, None].astype(np.float32)
    assert np.array_equal(entry_named(third, "case_001").image(), expected)


def entry_named(dm: NnUNetDataModule, name: str):
    return next(e for split in dm.entries.values() for e in split if e.name == name)


def test_state_dict_restores_the_training_fingerprint(dataset):
    dm = make_dm(dataset)
    state = dm.state_dict()
    other = NnUNetDataModule(str(dataset), cache_dir=str(dataset.parent / "cache"), seed=3)
    other.setup("test")
    other.load_state_dict(state)
    assert other.fingerprints == dm.fingerprints
    assert other.dataset("test").normalizer.fingerprints == dm.fingerprints


# -- classification labels -------------------------------------------------------------------
def test_cls_from_rule_per_slice_and_per_case(dataset):
    dm = make_dm(dataset, cls_rule=RULE)
    entry, labels = dm.entries["train"][0], dm.cls_labels["train"][0]
    lesion = entry.label_counts[:, 2] > 0
    assert np.array_equal(labels, lesion.astype(np.int64)) and 0 < lesion.sum() < SHAPE[2]
    spec = dm.target_specs["cls"]
    assert spec.class_names == ("no_lesion", "lesion") and sum(spec.class_frequencies) == 1

    case = make_dm(dataset, cls_rule=RULE, cls_level="case")
    assert all(np.all(lab == 1) for lab in case.cls_labels["train"])  # every case has a lesion
    strict = make_dm(
        dataset, cls_rule={"kind": "min_voxels", "label": "lesion", "threshold": 10**6}
    )
    assert all(np.all(lab == 0) for lab in strict.cls_labels["train"])


def test_cls_from_csv_with_names_ids_and_slices(dataset):
    csv = dataset.parent / "labels.csv"
    csv.write_text("case,label,slice\ncase_000,malignant,\ncase_000,0,3\ncase_001,1,\ncase_002,,\n")
    dm = make_dm(dataset, cls_csv=str(csv), cls_classes=["benign", "malignant"], cls_rule=None)
    labels = cls_by_case(dm)
    assert labels["case_000"][3] == 0 and np.all(np.delete(labels["case_000"], 3) == 1)
    assert np.all(labels["case_001"] == 1)
    assert np.all(labels["case_002"] == -1) and np.all(labels["case_003"] == -1)
    ds = dm.dataset("val")
    val_case = dm.entries["val"][0].name
    assert ds[0]["has_target"]["cls"] == (val_case in ("case_000", "case_001"))

    csv.write_text("case,label\ncase_999,benign\n")
    with pytest.raises(NnUNetDataError, match=r"labels\.csv line 2: case 'case_999'"):
        make_dm(dataset, cls_csv=str(csv), cls_classes=["benign", "malignant"])
    csv.write_text("case,label\ncase_000,huge\n")
    with pytest.raises(NnUNetDataError, match=r"labels\.csv line 2: label 'huge'"):
        make_dm(dataset, cls_csv=str(csv), cls_classes=["benign", "malignant"])


# -- partial labels --------------------------------------------------------------------------
def test_case_without_mask_has_no_seg_target(tmp_path):
    root = make_nnunet_dataset(tmp_path, n_cases=4, shape=(16, 16, 6), without_mask=[0, 1])
    dm = make_dm(root, cls_rule=RULE, val_fraction=0.25)
    for split in ("train", "val"):
        ds = dm.dataset(split)
        for i in range(len(ds)):
            item = ds[i]
            unlabelled = dm.entries[split][item["case_index"]].name in ("case_000", "case_001")
            assert item["has_target"]["seg"] is not unlabelled
            assert item["has_target"]["cls"] is not unlabelled  # the rule needs the mask
            if unlabelled:
                assert torch.all(item["targets"]["seg"] == IGNORE_INDEX)


# -- PNG -------------------------------------------------------------------------------------
def test_png_dataset(tmp_path):
    root = make_nnunet_dataset(tmp_path, n_cases=5, shape=(24, 20, 1), png=True)
    dm = make_dm(root, cls_rule=RULE)
    assert dm.input_shape == (1, 20, 24)  # rows = y (20), columns = x (24)
    assert dm.fingerprints == {}  # 'gray' is z-scored per image
    ds = dm.dataset("train")
    assert len(ds) == len(dm.entries["train"])  # one slice per case
    item = ds[0]
    assert abs(float(item["image"].mean())) < 1e-4  # per-image z-score
    assert set(item["targets"]["seg"].unique().tolist()) <= {0, 1, 2}


def test_rgb_png_gives_three_channels(tmp_path):
    root = make_nnunet_dataset(tmp_path, n_cases=3, shape=(12, 8, 1), png=True, with_test=False)
    description = json.loads((root / "dataset.json").read_text())
    description["channel_names"] = {str(c): "rgb_to_0_1" for c in range(3)}
    (root / "dataset.json").write_text(json.dumps(description))
    rng = np.random.default_rng(0)
    pixels = {}
    for case in range(3):
        pixels[case] = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)  # rows x cols x RGB
        Image.fromarray(pixels[case]).save(root / "imagesTr" / f"case_{case:03d}_0000.png")
    dm = make_dm(root, val_fraction=0.34, test_fraction=0.34)
    assert dm.input_shape == (3, 8, 12)
    entry = dm.entries["train"][0]
    image = dm.dataset("train")[0]["image"]
    expected = pixels[int(entry.name[-3:])].transpose(2, 0, 1) / 255.0
    assert np.allclose(image.numpy(), expected, atol=1e-6)


# -- bad input -------------------------------------------------------------------------------
def _error(root: Path, **kwargs) -> str:
    with pytest.raises((NnUNetDataError, FileNotFoundError)) as info:
        make_dm(root, **kwargs)
    return str(info.value)


def test_truncated_nifti_names_the_file(dataset):
    path = dataset / "imagesTr" / "case_002_0000.nii.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = _error(dataset)
    assert str(path) in message and "truncated" in message


def test_image_mask_shape_mismatch_names_the_file(dataset):
    mask = dataset / "labelsTr" / "case_001.nii.gz"
    save_nifti(mask, np.zeros((32, 30, 12), np.uint8), affine_for((0.8, 0.8, 2.5)))
    message = _error(dataset)
    assert str(mask) in message and "shape" in message


def test_affine_mismatch_names_the_file(dataset):
    mask = dataset / "labelsTr" / "case_001.nii.gz"
    save_nifti(mask, np.zeros(SHAPE, np.uint8), affine_for((0.8, 0.8, 2.5), origin=(0, 0, 0)))
    message = _error(dataset)
    assert str(mask) in message and "affine" in message


def test_label_not_in_dataset_json_names_the_file(dataset):
    mask = dataset / "labelsTr" / "case_003.nii.gz"
    values = np.zeros(SHAPE, np.uint8)
    values[3, 3, 3] = 7
    save_nifti(mask, values, affine_for((0.8, 0.8, 2.5)))
    message = _error(dataset)
    assert str(mask) in message and "[7]" in message


def test_empty_images_folder_names_it(dataset):
    for path in (dataset / "imagesTr").iterdir():
        path.unlink()
    for path in (dataset / "labelsTr").iterdir():
        path.unlink()
    message = _error(dataset)
    assert str(dataset / "imagesTr") in message and "no" in message


def test_missing_dataset_json_names_it(dataset):
    (dataset / "dataset.json").unlink()
    assert str(dataset / "dataset.json") in _error(dataset)


def test_bad_dataset_json_and_layout(dataset):
    description = json.loads((dataset / "dataset.json").read_text())
    description["numTraining"] = 5
    (dataset / "dataset.json").write_text(json.dumps(description))
    assert "numTraining=5" in _error(dataset)

    description["numTraining"] = 4
    description["labels"] = {"background": 0, "organ": 1, "lesion": 3}
    (dataset / "dataset.json").write_text(json.dumps(description))
    assert "without gaps" in _error(dataset)

    description["labels"] = {"background": 0, "organ": 1, "lesion": 2}
    (dataset / "dataset.json").write_text(json.dumps(description))
    stray = dataset / "labelsTr" / "case_999.nii.gz"
    stray.write_bytes(b"")
    message = _error(dataset)
    assert str(stray) in message and "no image" in message
