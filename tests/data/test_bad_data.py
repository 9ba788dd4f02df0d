"""Bad data on disk (issue 9): each fault, made to happen on a valid fixture dataset, fails
setup with its error class and the file's name; with `data.skip_bad=true` the case/sample is
left out, listed in `bad_data`, and every good one is still there."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from fixtures.corrupt import PIXDIM_X, SROW_X, patch_nifti_header, random_bytes, truncate
from fixtures.nnunet import affine_for, make_nnunet_dataset, save_nifti
from fixtures.npy_mtl import KINDS, make_npy_dataset
from PIL import Image

from mtl.data import npy_check
from mtl.data.bad_data import BAD_DATA_FILE, BadDataError, write_bad_data_report
from mtl.data.nnunet import NnUNetDataModule
from mtl.data.nnunet_io import ImageReadError
from mtl.data.nnunet_layout import NnUNetDataError, NnUNetMissingError
from mtl.data.npy_layout import NpyDataError, NpyMissingError
from mtl.data.npy_mtl import CityscapesDataModule, NYUv2DataModule

SHAPE = (16, 16, 4)  # X x Y x Z of the NIfTI cases
AFFINE = affine_for((0.8, 0.8, 2.5))
N_CASES = 5
BAD_CASE = "case_001"
SIZE = (8, 12)  # H x W of the .npy samples
N_TRAIN, N_VAL = 10, 4
NYU = ("nyuv2",)  # the only kind with normals
NPY_MODULES = {"nyuv2": NYUv2DataModule, "cityscapes": CityscapesDataModule}


# -- nnU-Net: one bad file in case_001 --------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    name: str
    target: str  # the file of case_001 to break: "image" or "mask"
    write: Callable[[Path], None]  # breaks it in place
    error: type[BadDataError]
    says: str  # part of the message saying what is wrong
    png: bool = False

    def make(self, root: Path) -> Path:
        ending = ".png" if self.png else ".nii.gz"
        path = root / "imagesTr" / f"{BAD_CASE}_0000{ending}"
        if self.target == "mask":
            path = root / "labelsTr" / f"{BAD_CASE}{ending}"
        self.write(path)
        return path


def _nii(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: save_nifti(path, array, AFFINE)


def _png(mode: str, size: tuple[int, int]) -> Callable[[Path], None]:
    return lambda path: Image.new(mode, size).save(path)


def _header(offset: int, *values: float) -> Callable[[Path], None]:
    return lambda path: patch_nifti_header(path, offset, values)


def _one(value: float, dtype: type = np.float32) -> np.ndarray:
    array = np.zeros(SHAPE, dtype=dtype)
    array[3, 4, 1] = value
    return array


def _empty(path: Path) -> None:
    path.write_bytes(b"")


NNUNET_FAULTS = [
    Fault("corrupt image", "image", random_bytes, ImageReadError, "not a NIfTI"),
    Fault("truncated image", "image", truncate, ImageReadError, "truncated"),
    Fault("truncated mask", "mask", truncate, ImageReadError, "truncated"),
    Fault("empty file", "image", _empty, ImageReadError, "Empty file"),
    Fault("complex image", "image", _nii(np.ones(SHAPE, np.complex64)), ImageReadError, "real"),
    Fault("fractional mask", "mask", _nii(_one(0.5)), ImageReadError, "non-integer"),
    Fault("NaN in mask", "mask", _nii(_one(np.nan)), ImageReadError, "NaN"),
    Fault("undeclared label", "mask", _nii(_one(7, np.uint8)), NnUNetDataError, "not declare"),
    Fault("mask shape", "mask", _nii(np.zeros((16, 14, 4), np.uint8)), NnUNetDataError, "shape"),
    Fault("4D image", "image", _nii(np.zeros((*SHAPE, 2), np.float32)), ImageReadError, "3D"),
    Fault("NaN spacing", "image", _header(PIXDIM_X, np.nan), ImageReadError, "spacing"),
    Fault("flat affine", "mask", _header(SROW_X, 0, 0, 0, 0), ImageReadError, "degenerate"),
    Fault("NaN pixels", "image", _nii(_one(np.nan)), ImageReadError, "1 NaN or infinite"),
    Fault("infinite pixels", "image", _nii(_one(np.inf)), ImageReadError, "NaN or infinite"),
    Fault("truncated PNG", "image", truncate, ImageReadError, "truncated", png=True),
    Fault("corrupt PNG", "image", random_bytes, ImageReadError, "not a PNG", png=True),
    Fault("RGBA PNG", "image", _png("RGBA", (16, 16)), ImageReadError, "RGBA", png=True),
    Fault("RGB for gray", "image", _png("RGB", (16, 16)), NnUNetDataError, "3 channel", png=True),
    Fault("PNG mask size", "mask", _png("L", (16, 12)), NnUNetDataError, "shape", png=True),
]


def _nnunet_root(tmp_path: Path, png: bool = False, n_cases: int = N_CASES) -> Path:
    return make_nnunet_dataset(tmp_path / "raw", n_cases=n_cases, shape=SHAPE, png=png)


def _nnunet(root: Path, **kwargs) -> NnUNetDataModule:
    kwargs.setdefault("val_fraction", 0.2)
    dm = NnUNetDataModule(str(root), cache_dir=str(root.parent / "cache"), batch_size=2, **kwargs)
    dm.setup("fit")
    return dm


def _case_splits(root: Path) -> dict[str, set[str]]:
    """The split of every case, from the file names only (nothing is read)."""
    dm = NnUNetDataModule(str(root), cache_dir=str(root.parent / "cache"), val_fraction=0.2)
    return {split: {c.name for c in cases} for split, cases in dm.split_cases().items()}


@pytest.mark.parametrize("fault", NNUNET_FAULTS, ids=lambda f: f.name)
def test_nnunet_fault_fails_setup_naming_the_file(tmp_path, fault):
    root = _nnunet_root(tmp_path, png=fault.png)
    bad = fault.make(root)
    with pytest.raises(BadDataError) as info:
        _nnunet(root)
    message = str(info.value)
    assert type(info.value) is fault.error, message
    assert str(bad) in message and fault.says in message
    assert info.value.path == bad
    assert f"set data.skip_bad=true to leave case '{BAD_CASE}' out" in message


@pytest.mark.parametrize("fault", NNUNET_FAULTS, ids=lambda f: f.name)
def test_nnunet_fault_skipped_with_skip_bad(tmp_path, fault):
    root = _nnunet_root(tmp_path, png=fault.png)
    before = _case_splits(root)
    bad = fault.make(root)
    dm = _nnunet(root, skip_bad=True)

    split = next(s for s, names in before.items() if BAD_CASE in names)
    assert [(e["split"], e["file"]) for e in dm.bad_data] == [(split, str(bad))]
    assert fault.says in dm.bad_data[0]["error"]
    slices = 1 if fault.png else SHAPE[2]
    for name, cases in before.items():  # every good case is still there, in its split
        kept = {entry.name for entry in dm.entries[name]}
        assert kept == cases - {BAD_CASE}
        assert len(dm.dataset(name)) == slices * len(kept)
    assert not list(dm.cache.cases_dir.glob(f"{BAD_CASE}__*"))  # nothing cached for it


def test_nnunet_repaired_file_is_read_again(tmp_path):
    root = _nnunet_root(tmp_path)
    image = root / "imagesTr" / f"{BAD_CASE}_0000.nii.gz"
    good = image.read_bytes()
    truncate(image)
    assert _nnunet(root, skip_bad=True).bad_data
    image.write_bytes(good)  # restored: a new modification time, so a new cache key
    later = image.stat().st_mtime_ns + 10**9
    os.utime(image, ns=(later, later))
    dm = _nnunet(root, skip_bad=True)
    assert dm.bad_data == [] and BAD_CASE in dm.cache.built


def test_nnunet_damaged_cache_entry_is_rebuilt(tmp_path):
    root = _nnunet_root(tmp_path)
    first = _nnunet(root)
    entry = next(e for split in first.entries.values() for e in split if e.name == BAD_CASE)
    truncate(entry.image_path)  # e.g. a full disk while another run rewrote it
    second = _nnunet(root)
    assert second.cache.built == [BAD_CASE]
    assert np.asarray(second.dataset("train")[0]["image"]).size > 0


# -- .npy (NYUv2, Cityscapes): one bad file ----------------------------------------------------
@dataclass(frozen=True)
class NpyFault:
    name: str
    split: str  # the disk folder: train (our train/val) or val (our test)
    modality: str
    write: Callable[[Path], None]
    says: str
    kinds: tuple[str, ...] = ("nyuv2", "cityscapes")


def _save(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, array, allow_pickle=array.dtype == object)


def _label(value: float) -> np.ndarray:
    label = np.zeros(SIZE, np.float32)
    label[2, 3] = value
    return label


def _depth(value: float) -> np.ndarray:
    depth = np.ones((*SIZE, 1), np.float32)
    depth[1, 1] = value
    return depth


NPY_FAULTS = [
    NpyFault("corrupt", "train", "image", random_bytes, "not an .npy file"),
    NpyFault("truncated", "train", "depth", truncate, "truncated"),
    NpyFault("empty file", "val", "label", _empty, "truncated"),
    NpyFault("object array", "train", "label", _save(np.array([None], object)), "Python objects"),
    NpyFault("string array", "train", "image", _save(np.full((*SIZE, 3), "a")), "dtype <U1"),
    NpyFault("complex", "train", "image", _save(np.zeros((*SIZE, 3), np.complex64)), "complex64"),
    NpyFault("uint8 image", "val", "image", _save(np.zeros((*SIZE, 3), np.uint8)), "dtype uint8"),
    NpyFault("image 0-255", "train", "image", _save(np.full((*SIZE, 3), 255.0)), "[0, 1]"),
    NpyFault("fractional label", "train", "label", _save(_label(2.5)), "non-integer"),
    NpyFault("label out of range", "val", "label", _save(_label(99)), "class ids in [0, 99]"),
    NpyFault("negative depth", "train", "depth", _save(_depth(-1.0)), "negative depth"),
    NpyFault("depth 2D", "train", "depth", _save(np.ones(SIZE, np.float32)), "H x W x 1"),
    NpyFault("image 4 channels", "val", "image", _save(np.zeros((*SIZE, 4))), "H x W x 3"),
    NpyFault("smaller label", "train", "label", _save(np.zeros((4, 12))), "most common size"),
    NpyFault("NaN pixels", "train", "image", _save(np.full((*SIZE, 3), np.nan)), "NaN"),
    NpyFault("NaN label", "train", "label", _save(_label(np.nan)), "replace NaN with -1"),
    NpyFault("infinite depth", "val", "depth", _save(_depth(np.inf)), "invalid depth is 0"),
    NpyFault(
        "NaN normals",
        "train",
        "normal",
        _save(np.full((*SIZE, 3), np.nan)),
        "0 vectors",
        ("nyuv2",),
    ),
]
NPY_CASES = [
    pytest.param(kind, fault, id=f"{kind}-{fault.name}")
    for fault in NPY_FAULTS
    for kind in fault.kinds
]
BAD_INDEX = {"train": 3, "val": 1}


def _npy_root(tmp_path: Path, kind: str) -> Path:
    return make_npy_dataset(tmp_path / kind, kind, n_train=N_TRAIN, n_val=N_VAL, size=SIZE)


def _npy(kind: str, root: Path, **kwargs):
    dm = NPY_MODULES[kind](root=str(root), val_fraction=0.2, **kwargs)
    dm.setup("fit")
    return dm


def _break_npy(root: Path, kind: str, fault: NpyFault) -> tuple[Path, int]:
    folder = KINDS[kind][2] if fault.modality == "label" else fault.modality
    index = BAD_INDEX[fault.split]
    path = root / fault.split / folder / f"{index}.npy"
    fault.write(path)
    return path, index


@pytest.mark.parametrize("kind,fault", NPY_CASES)
def test_npy_fault_fails_setup_naming_the_file(tmp_path, kind, fault):
    root = _npy_root(tmp_path, kind)
    bad, index = _break_npy(root, kind, fault)
    with pytest.raises(BadDataError) as info:
        _npy(kind, root)
    message = str(info.value)
    assert type(info.value) is NpyDataError, message
    assert str(bad) in message and fault.says in message
    assert info.value.path == bad
    assert f"set data.skip_bad=true to leave sample {index} out" in message


@pytest.mark.parametrize("kind,fault", NPY_CASES)
def test_npy_fault_skipped_with_skip_bad(tmp_path, kind, fault):
    root = _npy_root(tmp_path, kind)
    before = NPY_MODULES[kind](root=str(root), val_fraction=0.2, scan_values=False)
    expected = before.split_indices()  # headers only: nothing is recorded as checked
    bad, index = _break_npy(root, kind, fault)
    dm = _npy(kind, root, skip_bad=True)

    ours = (
        ["test"] if fault.split == "val" else [s for s in ("train", "val") if index in expected[s]]
    )
    assert [(e["split"], e["file"]) for e in dm.bad_data] == [(ours[0], str(bad))]
    assert fault.says in dm.bad_data[0]["error"]
    for split, indices in dm.split_indices().items():  # every good sample is still there
        wanted = [i for i in expected[split] if not (split in ours and i == index)]
        assert indices.tolist() == wanted
        dataset = dm.dataset(split)
        assert len(dataset) == len(wanted)
        assert [dataset[i]["index"] for i in range(len(dataset))] == wanted  # all readable


def test_npy_checked_files_are_not_read_again_until_they_change(tmp_path, monkeypatch):
    root = _npy_root(tmp_path, "nyuv2")
    _npy("nyuv2", root)
    assert list((root / "mtl_cache").glob("npy_checked_*.json"))

    def fail(modality, path, *args):
        raise AssertionError(f"{path} was read again")

    with monkeypatch.context() as patch:
        patch.setattr(npy_check, "check_values", fail)
        _npy("nyuv2", root)  # every file remembered: nothing is read

    path = root / "train" / "depth" / "5.npy"
    np.save(path, _depth(np.nan))  # same size as before: the modification time tells
    later = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    with pytest.raises(NpyDataError, match=str(path)):
        _npy("nyuv2", root)


def test_npy_value_errors_in_loader_workers_name_the_file(tmp_path):
    root = _npy_root(tmp_path, "cityscapes")
    path = root / "val" / "depth" / "2.npy"
    np.save(path, _depth(np.nan))
    dm = _npy("cityscapes", root, scan_values=False, num_workers=1, batch_size=2)
    with pytest.raises(NpyDataError, match=str(path)):
        list(dm.test_dataloader())


# -- missing root and empty splits: errors with or without skip_bad ---------------------------
@pytest.mark.parametrize("skip_bad", [False, True])
@pytest.mark.parametrize("kind", ["nnunet", "nyuv2", "cityscapes"])
def test_missing_root_is_an_error_naming_it(tmp_path, kind, skip_bad):
    root = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        if kind == "nnunet":
            NnUNetDataModule(str(root), skip_bad=skip_bad)
        else:
            NPY_MODULES[kind](root=str(root), skip_bad=skip_bad)
    expected = NnUNetMissingError if kind == "nnunet" else NpyMissingError
    assert type(info.value) is expected
    assert f"data.root={root} does not exist" in str(info.value)
    assert "never downloads" in str(info.value)


def test_nnunet_empty_images_folder(tmp_path):
    root = _nnunet_root(tmp_path)
    for folder in ("imagesTr", "labelsTr"):
        for path in (root / folder).iterdir():
            path.unlink()
    with pytest.raises(
        NnUNetDataError, match=f"{root / 'imagesTr'} holds no .* the split is empty"
    ):
        _nnunet(root, skip_bad=True)


def test_nnunet_fractions_leaving_no_training_case(tmp_path):
    root = make_nnunet_dataset(tmp_path / "raw", n_cases=2, shape=SHAPE, with_test=False)
    with pytest.raises(NnUNetDataError, match=r"holds 2 cases.*leaving none to train"):
        _nnunet(root, val_fraction=0.5, test_fraction=0.5)


def test_nnunet_skipping_that_empties_a_split_is_an_error(tmp_path):
    root = _nnunet_root(tmp_path)
    (val_case,) = _case_splits(root)["val"]
    truncate(root / "imagesTr" / f"{val_case}_0000.nii.gz")
    with pytest.raises(NnUNetDataError, match="the val split is empty: all 1 of its cases"):
        _nnunet(root, skip_bad=True)


def test_npy_empty_train_folder(tmp_path):
    root = _npy_root(tmp_path, "nyuv2")
    for path in (root / "train" / "image").iterdir():
        path.unlink()
    with pytest.raises(NpyDataError, match=r"holds no .* the split is empty"):
        _npy("nyuv2", root, skip_bad=True)


def test_npy_val_fraction_leaving_a_split_empty(tmp_path):
    root = _npy_root(tmp_path, "nyuv2")
    with pytest.raises(NpyDataError, match="gives 10 for validation, leaving a split empty"):
        NYUv2DataModule(root=str(root), val_fraction=0.96).setup("fit")


def test_npy_skipping_that_empties_a_split_is_an_error(tmp_path):
    root = _npy_root(tmp_path, "cityscapes")
    for index in range(N_VAL):
        random_bytes(root / "val" / "image" / f"{index}.npy")
    with pytest.raises(NpyDataError, match=f"the test split is empty: all {N_VAL} of its"):
        _npy("cityscapes", root, skip_bad=True)


def test_npy_skip_bad_needs_the_value_pass(tmp_path):
    root = _npy_root(tmp_path, "nyuv2")
    with pytest.raises(ValueError, match=r"data.skip_bad=true .* data.scan_values=true"):
        NYUv2DataModule(root=str(root), skip_bad=True, scan_values=False)


# -- the report ------------------------------------------------------------------------------
def test_report_written_only_when_skipping_is_on(tmp_path):
    root = _npy_root(tmp_path, "nyuv2")
    assert write_bad_data_report(_npy("nyuv2", root), tmp_path / "off") is None
    assert not (tmp_path / "off").exists()
    path = write_bad_data_report(_npy("nyuv2", root, skip_bad=True), tmp_path / "on")
    assert path == tmp_path / "on" / BAD_DATA_FILE and json.loads(path.read_text()) == []


@pytest.mark.slow
def test_training_run_skips_a_bad_file_and_writes_the_report(tmp_path):
    from mtl.training.run import train

    root = make_npy_dataset(tmp_path / "nyuv2", "nyuv2", n_train=10, n_val=4, size=(32, 32))
    bad = root / "train" / "image" / "3.npy"
    truncate(bad)
    cfg = compose_config(
        tmp_path,
        [
            "data=nyuv2",
            f"data.root={root}",
            "data.skip_bad=true",
            "data.val_fraction=0.2",
            "data.num_workers=0",
            "data.persistent_workers=false",
            "data.batch_size=4",
            "tasks=[seg,depth]",
            "tasks.seg.background=false",
            "optimized_metric=val/seg/miou",
            "encoder.channels=[8,16,32]",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false",
            "extras.print_config=false",
            "extras.print_metrics=false",
            "logger=none",
        ],
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["test/seg/miou"])
    report = json.loads((Path(cfg.paths.output_dir) / BAD_DATA_FILE).read_text())
    assert [entry["file"] for entry in report] == [str(bad)]
    assert report[0]["split"] in ("train", "val") and "truncated" in report[0]["error"]
