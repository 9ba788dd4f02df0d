"""`predict` with a tiny model trained here (nnU-Net raw CT, 2.5D, seg + cls) on NIfTI, PNG,
pydicom's real CT slice, a DICOM series folder and an image larger than the training slices:
outputs in the input's format and geometry, the training preprocessing, CSV and errors."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import compose_config
from fixtures.dicom import CT_SMALL, apply_modality_lut, write_ct_series
from fixtures.nnunet import affine_for, make_nnunet_dataset, phantom_case, save_nifti
from omegaconf import OmegaConf
from PIL import Image

from mtl.inference.checkpoint import load_model
from mtl.inference.dicom import read_dicom
from mtl.inference.discover import discover_inputs
from mtl.inference.preprocess import ChannelMismatchError, context_stack, prepare_slices
from mtl.inference.readers import read_input
from mtl.inference.run import predict
from mtl.training.builders import ConfigError, build_datamodule
from mtl.training.run import train

REPO = Path(__file__).resolve().parents[2]
SPACING = (0.8, 0.8, 2.5)
NUM_CLASSES = 3  # background, organ, lesion
CLS_CLASSES = ("no_lesion", "lesion")
TRAIN = [
    "data=nnunet",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "data.num_workers=0",
    "data.val_fraction=0.25",
    "data.context=1",
    "data.target_spacing=[1.0,1.0]",
    "data.cls_rule={kind: has_label, label: lesion}",
    "tasks=[seg,cls]",
    "encoder.channels=[8,16,32]",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.precision=32-true",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.prediction_images.every_n_epochs=0",
    "extras.print_config=false",
    "extras.print_metrics=false",
    "logger=none",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One tiny training run shared by every test: 32x32 slices at 0.8 mm resampled to 1 mm
    (26x26 slices), 2.5D context 1."""
    tmp = tmp_path_factory.mktemp("predict_run")
    root = make_nnunet_dataset(tmp / "raw", n_cases=4, shape=(32, 32, 6), spacing=SPACING, n_test=1)
    train(compose_config(tmp, [*TRAIN, f"data.root={root}"]))
    ckpt = tmp / "run" / "checkpoints" / "best.ckpt"
    assert ckpt.is_file()
    return {"ckpt": ckpt, "root": root, "run": tmp / "run"}


def _predict(ckpt: Path, inp: Path, out: Path, *overrides: str) -> dict:
    cfg = compose_config(
        out, [f"ckpt_path={ckpt}", f"input={inp}", "device=cpu", *overrides], "predict"
    )
    return predict(cfg)


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "run" / "predictions.csv").open() as handle:
        return list(csv.DictReader(handle))


def _check_rows(rows: list[dict[str, str]], count: int) -> None:
    assert len(rows) == count
    for row in rows:
        probs = [float(row[f"cls_p_{c}"]) for c in CLS_CLASSES]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["cls"] == CLS_CLASSES[int(np.argmax(probs))]
        pixels = sum(int(row[f"seg_pixels_{c}"]) for c in ("background", "organ", "lesion"))
        assert pixels > 0


def _flip_x(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored with the x axis reversed (another voxel order, same world)."""
    flipped = affine.copy()
    flipped[:3, 0] = -affine[:3, 0]
    flipped[:3, 3] = affine[:3, 3] + (data.shape[0] - 1) * affine[:3, 0]
    return np.ascontiguousarray(data[::-1]), flipped


def test_nifti_mask_has_the_input_affine_and_shape(trained, tmp_path):
    source = trained["root"] / "imagesTs" / "test_000_0000.nii.gz"
    summary = _predict(trained["ckpt"], source, tmp_path)
    mask_path = tmp_path / "run" / "seg" / "test_000.nii.gz"
    assert mask_path in summary["masks"]
    image, mask = nib.load(source), nib.load(mask_path)
    assert mask.shape == image.shape
    np.testing.assert_array_equal(mask.affine, image.affine)
    labels = np.asarray(mask.dataobj)
    assert labels.dtype == np.uint8 and labels.max() < NUM_CLASSES
    _check_rows(_rows(tmp_path), count=image.shape[2])
    assert len(list((tmp_path / "run" / "overlays" / "test_000").glob("slice_*.png"))) == 6

    # the same scan stored with x reversed: the mask follows the voxel order it was given
    data, affine = _flip_x(np.asarray(image.dataobj), image.affine)
    folder = tmp_path / "flipped_in"
    folder.mkdir()
    save_nifti(folder / "flipped.nii.gz", data, affine)
    _predict(trained["ckpt"], folder / "flipped.nii.gz", tmp_path / "flipped")
    flipped = nib.load(tmp_path / "flipped" / "run" / "seg" / "flipped.nii.gz")
    np.testing.assert_array_equal(flipped.affine, nib.load(folder / "flipped.nii.gz").affine)
    assert not np.allclose(flipped.affine, image.affine)
    np.testing.assert_array_equal(np.asarray(flipped.dataobj)[::-1], labels)


def test_slices_are_prepared_exactly_as_training_served_them(trained):
    """Resampling, CT fingerprint normalisation and 2.5D stacking equal the data module's."""
    model = load_model(trained["ckpt"], "cpu")
    run_cfg = OmegaConf.load(trained["run"] / "config.yaml")
    datamodule = build_datamodule(run_cfg)
    served = datamodule.dataset("test")  # imagesTs: the single case test_000
    [source] = discover_inputs(trained["root"] / "imagesTs" / "test_000_0000.nii.gz")
    volume = prepare_slices(read_input(source), model.spec)
    assert model.spec.context == 1 and model.spec.in_channels == 3
    assert model.spec.target_spacing == (1.0, 1.0) and model.spec.patch_size == (26, 26)
    ours = context_stack(volume, np.arange(len(volume)), model.spec.context)
    assert len(served) == len(ours) == 6
    for z in range(len(ours)):
        np.testing.assert_allclose(ours[z], served[z]["image"].numpy(), rtol=1e-6, atol=1e-6)


def test_png_gives_a_png_mask_of_the_same_size(trained, tmp_path):
    hu, _ = phantom_case(np.random.default_rng(5), (28, 40, 1))  # x = 28 columns, y = 40 rows
    path = tmp_path / "slice.png"
    Image.fromarray(np.clip((hu[:, :, 0].T + 1000) / 8, 0, 255).astype(np.uint8)).save(path)
    summary = _predict(trained["ckpt"], path, tmp_path)
    mask = Image.open(tmp_path / "run" / "seg" / "slice.png")
    assert mask.mode == "L" and mask.size == (28, 40)  # PIL: (width, height)
    assert np.asarray(mask).max() < NUM_CLASSES
    assert summary["tiles"]["slice"] > 1  # 40 x 28 > the 26 x 26 training slices
    assert (tmp_path / "run" / "overlays" / "slice.png").is_file()
    _check_rows(_rows(tmp_path), count=1)


def test_real_ct_dicom_file(trained, tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    summary = _predict(trained["ckpt"], CT_SMALL, tmp_path)
    mask = nib.load(tmp_path / "run" / "seg" / "CT_small.nii.gz")
    assert mask.shape == (ds.Columns, ds.Rows, 1)
    np.testing.assert_allclose(mask.affine, read_dicom([CT_SMALL]).affine, atol=1e-5)
    png = np.asarray(Image.open(tmp_path / "run" / "seg" / "CT_small" / "0000_CT_small.png"))
    assert png.shape == (ds.Rows, ds.Columns)  # as the DICOM pixel array
    np.testing.assert_array_equal(png, np.asarray(mask.dataobj)[:, :, 0].T)
    # 128 px at 0.66 mm are 85 px at the run's 1 mm: larger than the 26 px training slices
    assert summary["tiles"]["CT_small"] > 1
    [row] = _rows(tmp_path)
    assert row["file"] == str(CT_SMALL)
    _check_rows([row], count=1)


def test_dicom_series_folder_in_position_order(trained, tmp_path):
    files = write_ct_series(tmp_path / "series", num_slices=5, spacing=5.0, columns=96)
    _predict(trained["ckpt"], tmp_path / "series", tmp_path)
    mask = nib.load(tmp_path / "run" / "seg" / "series.nii.gz")
    assert mask.shape == (96, 128, 5)  # columns x rows x slices
    np.testing.assert_allclose(mask.affine[:3, 2], [0, 0, 5.0], atol=1e-5)
    pngs = sorted(p.name for p in (tmp_path / "run" / "seg" / "series").glob("*.png"))
    assert pngs == [f"{k:04d}_{path.stem}.png" for k, path in enumerate(files)]
    assert np.asarray(Image.open(tmp_path / "run" / "seg" / "series" / pngs[0])).shape == (128, 96)
    rows = _rows(tmp_path)
    assert [row["file"] for row in rows] == [str(p) for p in files]
    _check_rows(rows, count=5)


def test_image_larger_than_training_uses_sliding_window(trained, tmp_path):
    hu, _ = phantom_case(np.random.default_rng(3), (90, 70, 3))
    path = tmp_path / "large.nii.gz"
    save_nifti(path, hu, affine_for(SPACING))
    summary = _predict(trained["ckpt"], path, tmp_path, "sliding_window.image_level=tiles")
    # 70 rows x 90 columns at 0.8 mm are 56 x 72 at 1 mm; 26 px tiles <= 13 px apart: 4 x 5
    assert summary["tiles"]["large"] == 4 * 5
    mask = nib.load(tmp_path / "run" / "seg" / "large.nii.gz")
    assert mask.shape == (90, 70, 3)
    np.testing.assert_array_equal(mask.affine, nib.load(path).affine)
    _check_rows(_rows(tmp_path), count=3)


THRESHOLD_HU = 40.5  # between integer HU values: no ties


@pytest.fixture
def threshold_model(trained, monkeypatch):
    """The trained model with its forward replaced by 'centre slice > 40.5 HU' (in the
    normalised space, via the training fingerprint): every pipeline step but the network runs,
    and the written mask must equal the threshold of the input in the input's own layout."""
    import mtl.inference.run as run_module

    def load(ckpt, device):
        model = load_model(ckpt, device)
        limit = float(model.spec.fingerprints[0].normalize(np.array([THRESHOLD_HU]))[0])
        centre = model.spec.context  # neighbour-major stacking, one channel

        def forward(images):
            above = images[:, centre : centre + 1] - limit
            seg = torch.cat([-above, above, torch.full_like(above, -1e6)], dim=1)
            return {"seg": seg, "cls": images.new_zeros(len(images), 2)}

        model.module.forward = forward
        return model

    monkeypatch.setattr(run_module, "load_model", load)


def test_masks_line_up_with_their_images(trained, threshold_model, tmp_path):
    """NIfTI in a reoriented voxel order, a non-square PNG and a non-square DICOM series, all
    at the run's 1 mm (no resampling), all larger than the training slices (tiled)."""
    hu, _ = phantom_case(np.random.default_rng(7), (40, 30, 3))
    data, affine = _flip_x(hu, affine_for((1.0, 1.0, 2.5)))
    save_nifti(tmp_path / "scan.nii.gz", data, affine)
    gray = np.random.default_rng(8).integers(0, 90, size=(36, 28)).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "photo.png")
    files = write_ct_series(tmp_path / "series", num_slices=3, columns=100, pixel_spacing=1.0)

    out = tmp_path / "out"
    for name in ("scan.nii.gz", "photo.png", "series"):
        _predict(trained["ckpt"], tmp_path / name, out / name)
    seg = {name: out / name / "run" / "seg" for name in ("scan.nii.gz", "photo.png", "series")}

    nifti = np.asarray(nib.load(seg["scan.nii.gz"] / "scan.nii.gz").dataobj)
    np.testing.assert_array_equal(nifti, (data > THRESHOLD_HU).astype(np.uint8))
    png = np.asarray(Image.open(seg["photo.png"] / "photo.png"))
    np.testing.assert_array_equal(png, (gray > THRESHOLD_HU).astype(np.uint8))
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        hu_slice = apply_modality_lut(ds.pixel_array, ds)  # the HU conversion, checked
        mask = np.asarray(Image.open(seg["series"] / "series" / f"{k:04d}_{path.stem}.png"))
        np.testing.assert_array_equal(mask, (hu_slice > THRESHOLD_HU).astype(np.uint8))
        assert 0 < mask.mean() < 1


def test_checkpoint_without_input_spec_falls_back_to_the_run_data(trained, tmp_path):
    old = torch.load(trained["ckpt"], weights_only=True)
    for value in old.values():
        if isinstance(value, dict):
            value.pop("input_spec", None)
    ckpt = trained["run"] / "checkpoints" / "old_format.ckpt"
    torch.save(old, ckpt)
    new = load_model(trained["ckpt"], "cpu").spec
    assert load_model(ckpt, "cpu").spec == new


def test_errors_name_the_problem_and_the_fix(trained, tmp_path):
    source = trained["root"] / "imagesTs" / "test_000_0000.nii.gz"
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*missing\.ckpt.*not found"):
        _predict(tmp_path / "missing.ckpt", source, tmp_path)
    alone = tmp_path / "alone" / "best.ckpt"
    alone.parent.mkdir()
    shutil.copy(trained["ckpt"], alone)
    with pytest.raises(ConfigError, match=r"no config\.yaml beside .*copy the run's config"):
        _predict(alone, source, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"input=.*nothing\.nii\.gz not found"):
        _predict(trained["ckpt"], tmp_path / "nothing.nii.gz", tmp_path)
    rgb = tmp_path / "colour.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(rgb)
    with pytest.raises(ChannelMismatchError, match=r"colour\.png gives 3 channel.*trained on 1"):
        _predict(trained["ckpt"], rgb, tmp_path)


@pytest.mark.slow
def test_predict_script_writes_into_its_run_folder(trained, tmp_path):
    """The Hydra entry point: defaults compose, outputs land in the run folder it prints."""
    out = tmp_path / "hydra_run"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "predict.py"),
            f"ckpt_path={trained['ckpt']}",
            f"input={CT_SMALL}",
            "device=cpu",
            f"hydra.run.dir={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"results in {out}" in result.stdout
    assert (out / "seg" / "CT_small.nii.gz").is_file()
    assert (out / "predictions.csv").is_file()


def test_synthetic_ct_run_predicts_real_ct(tmp_path):
    """A `data=ct` run (phantom slices, no physical spacing) stores its spec too; predict uses
    the image at its own pixel size and tiles it (128 px > the 64 px phantom slices)."""
    from conftest import TINY

    train(compose_config(tmp_path, [*TINY, "trainer.precision=32-true", "logger=none"]))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    model = load_model(ckpt, "cpu")
    assert model.spec.target_spacing is None and model.spec.patch_size == (64, 64)
    assert model.spec.channel_names == ("CT",)
    summary = _predict(ckpt, CT_SMALL, tmp_path / "predict")
    assert summary["tiles"]["CT_small"] == 3 * 3
    mask = nib.load(tmp_path / "predict" / "run" / "seg" / "CT_small.nii.gz")
    assert mask.shape == (128, 128, 1)
    assert np.asarray(mask.dataobj).max() < len(model.tasks["seg"].class_names)
